package c4c

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// ErrNotFound is returned by look-ups that found nothing.
var ErrNotFound = errors.New("not found")

// errorFrom turns a non-2xx answer into an *Error, reading the OData v2
// error body ({"error":{"code","message":{"value"}}}) or the REST API's
// ({"error":{"code","message"}}) when there is one. It closes the body.
func errorFrom(op string, res *http.Response) *Error {
	defer res.Body.Close()
	e := &Error{Op: op, Status: res.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 16<<10))
	var body struct {
		Error struct {
			Code    string          `json:"code"`
			Message json.RawMessage `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Code = body.Error.Code
		var odata struct {
			Value string `json:"value"`
		}
		var plain string
		switch {
		case json.Unmarshal(body.Error.Message, &odata) == nil && odata.Value != "":
			e.Message = odata.Value
		case json.Unmarshal(body.Error.Message, &plain) == nil:
			e.Message = plain
		}
	}
	if len(e.Message) > 300 {
		e.Message = e.Message[:300] + "..."
	}
	e.Message = strings.ReplaceAll(e.Message, "\n", " ")
	return e
}

// quote makes an OData string literal: single quotes, doubled inside.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
