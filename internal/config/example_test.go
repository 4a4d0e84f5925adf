package config_test

import (
	"fmt"

	"github.com/walsync/walsync/internal/config"
)

func ExampleParse() {
	data := []byte(`target: s3://backups/prod
databases:
  - path: /var/lib/app/main.db
    name: main
    sync-interval: 100ms
  - dir: /var/lib/app/tenants
`)
	c, err := config.Parse("walsync.yml", data, config.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Target)
	for _, db := range c.Databases {
		fmt.Printf("%s %s name=%q pattern=%q\n", db.Field, db.Path+db.Dir, db.Name, db.Pattern)
	}
	_, err = config.Parse("walsync.yml", []byte("databases:\n  - path: /a.db\n    sync-interval: fast\n"), config.Options{})
	fmt.Println(err)
	// Output:
	// s3://backups/prod
	// databases[0] /var/lib/app/main.db name="main" pattern=""
	// databases[1] /var/lib/app/tenants name="" pattern="*.db"
	// walsync.yml:3: databases[0].sync-interval: "fast" is not a duration (use a unit: 500ms, 1s, 5m, 24h)
}

func ExampleParse_litestream() {
	data := []byte(`dbs:
  - path: /var/lib/app/main.db
    monitor-interval: 1s
    replica:
      url: s3://backups/prod/main.db
`)
	c, err := config.Parse("litestream.yml", data, config.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Target, c.Databases[0].Name)
	for _, w := range c.Warnings {
		fmt.Println(w)
	}
	// Output:
	// s3://backups/prod main.db
	// litestream.yml:3: dbs[0].monitor-interval: ignored: walsync wakes on inotify events, it does not poll
}
