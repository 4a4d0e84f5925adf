package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// maxDeleteKeys is the most keys one DeleteObjects request takes.
const maxDeleteKeys = 1000

// Delete removes keys with DeleteObjects, up to 1000 per request. Missing
// keys are not an error; the first key the server failed to delete is.
func (c *Client) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if key == "" {
			return c.wrap(ctx, "delete", "", errors.New("empty key"))
		}
	}
	for batch := range slices.Chunk(keys, maxDeleteKeys) {
		if err := c.deleteBatch(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// deleteResult is the part of a DeleteObjects response that Delete reads.
type deleteResult struct {
	Errors []deleteError `xml:"Error"`
}

// deleteError is a key that DeleteObjects failed to delete.
type deleteError struct{ Key, Code, Message string }

// deleteBatch deletes up to maxDeleteKeys keys in one quiet DeleteObjects
// request, whose body S3 requires to come with its MD5.
func (c *Client) deleteBatch(ctx context.Context, keys []string) error {
	var b bytes.Buffer
	b.WriteString(`<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>`)
	for _, key := range keys {
		b.WriteString("<Object><Key>")
		xml.EscapeText(&b, []byte(c.key(key)))
		b.WriteString("</Key></Object>")
	}
	b.WriteString("</Delete>")
	md5Sum, sha := md5.Sum(b.Bytes()), sha256.Sum256(b.Bytes())
	h := http.Header{
		"Content-Md5":  {base64.StdEncoding.EncodeToString(md5Sum[:])},
		"Content-Type": {"application/xml"},
	}
	resp, err := c.do(ctx, &request{
		method: http.MethodPost, query: "delete", header: h,
		body: bytes.NewReader(b.Bytes()), size: int64(b.Len()), payload: hex.EncodeToString(sha[:]),
	})
	if err != nil {
		return c.wrap(ctx, "delete", keys[0], err)
	}
	defer resp.Body.Close()
	var out deleteResult
	if err := xml.NewDecoder(io.LimitReader(resp.Body, maxListBody)).Decode(&out); err != nil && err != io.EOF {
		return c.wrap(ctx, "delete", keys[0], fmt.Errorf("DeleteObjects response: %w", err))
	}
	errs := slices.DeleteFunc(out.Errors, func(e deleteError) bool { return e.Code == "NoSuchKey" })
	if len(errs) == 0 {
		return nil
	}
	e := errs[0]
	msg := fmt.Sprintf("s3: delete %s: %s: %s", c.trimPrefix(e.Key), e.Code, oneLine(e.Message))
	if len(errs) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(errs)-1)
	}
	var kind error
	if authCodes[e.Code] {
		kind = ErrAccessDenied
	}
	return &opError{msg: msg, kind: kind, err: &apiError{status: http.StatusOK, code: e.Code, message: e.Message}}
}
