package c4c

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

func (c *Client) odataURL(t Tenant, rest string) string {
	return t.URL + "/" + trimSlashes(c.cfg.ODataService) + "/" + rest
}

// csrfToken returns the tenant's token, fetching one (GET on the service
// root with x-csrf-token: Fetch) when there is none or refresh is set.
func (c *Client) csrfToken(ctx context.Context, t Tenant, st *tenantState, refresh bool) (string, error) {
	st.mu.Lock()
	tok := st.token
	st.mu.Unlock()
	if tok != "" && !refresh {
		return tok, nil
	}
	res, err := c.do(ctx, t, st, request{
		op: "odata_csrf", method: http.MethodGet, url: c.odataURL(t, ""),
		header: http.Header{"X-Csrf-Token": {"Fetch"}, "Accept": {"application/json"}}, length: -1,
	})
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", errorFrom("odata_csrf", res)
	}
	drain(res)
	tok = res.Header.Get("X-Csrf-Token")
	if tok == "" || strings.EqualFold(tok, "required") {
		return "", &Error{Op: "odata_csrf", Status: res.StatusCode, Message: "no CSRF token in the answer"}
	}
	st.mu.Lock()
	st.token = tok
	st.mu.Unlock()
	return tok, nil
}

// modify runs a modifying OData request with the CSRF token, fetching a new
// token and retrying once when the server rejects the one it has (403 with
// x-csrf-token: Required: the session expired).
func (c *Client) modify(ctx context.Context, t Tenant, req request) (*http.Response, error) {
	st := c.state(t)
	for attempt := 0; ; attempt++ {
		tok, err := c.csrfToken(ctx, t, st, attempt > 0)
		if err != nil {
			return nil, err
		}
		req.header.Set("X-Csrf-Token", tok)
		res, err := c.do(ctx, t, st, req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode == http.StatusForbidden && strings.EqualFold(res.Header.Get("X-Csrf-Token"), "required") && attempt == 0 {
			drain(res)
			continue
		}
		return res, nil
	}
}

// query runs an OData GET of collection with $filter and returns the
// results (d.results of OData v2 JSON).
func (c *Client) query(ctx context.Context, t Tenant, op, collection, filter, selectFields string, top int) ([]map[string]any, error) {
	q := url.Values{"$filter": {filter}, "$format": {"json"}}
	if selectFields != "" {
		q.Set("$select", selectFields)
	}
	if top > 0 {
		q.Set("$top", fmt.Sprint(top))
	}
	res, err := c.do(ctx, t, c.state(t), request{
		op: op, method: http.MethodGet, url: c.odataURL(t, collection+"?"+q.Encode()),
		header: http.Header{"Accept": {"application/json"}}, length: -1,
	})
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, errorFrom(op, res)
	}
	defer res.Body.Close()
	var body struct {
		D struct {
			Results []map[string]any `json:"results"`
		} `json:"d"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&body); err != nil {
		return nil, &Error{Op: op, Status: res.StatusCode, Err: fmt.Errorf("decode answer: %w", err)}
	}
	return body.D.Results, nil
}

// FindChatActivity returns the ObjectID of the activity of a Contact Pro
// chat, found with ChatFilter in ChatCollection. ErrNotFound when there is
// none (yet).
func (c *Client) FindChatActivity(ctx context.Context, t Tenant, contactID string) (string, error) {
	filter := strings.ReplaceAll(c.cfg.ChatFilter, "{contact_id}", quote(contactID))
	rows, err := c.query(ctx, t, "odata_find_activity", c.cfg.ChatCollection, filter, "ObjectID", 1)
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("chat activity of contact %s: %w", contactID, ErrNotFound)
	}
	id, _ := rows[0]["ObjectID"].(string)
	if id == "" {
		return "", &Error{Op: "odata_find_activity", Message: "activity has no ObjectID"}
	}
	return id, nil
}

// AttachmentNames returns the names of the attachments a parent object
// has, so an upload that completed before is not repeated.
func (c *Client) AttachmentNames(ctx context.Context, t Tenant, parentID string) (map[string]bool, error) {
	rows, err := c.query(ctx, t, "odata_list_attachments", c.cfg.AttachmentCollection, "ParentObjectID eq "+quote(parentID), "Name", 0)
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(rows))
	for _, r := range rows {
		if n, ok := r["Name"].(string); ok {
			names[n] = true
		}
	}
	return names, nil
}

// Attachment is a file to attach. Open is called for every attempt (a CSRF
// retry sends the body again) and must return the content from the start.
type Attachment struct {
	Name     string
	MimeType string
	// Size is the content's length in bytes, or -1 when unknown (the
	// upload is then chunked).
	Size int64
	Open func() (io.ReadCloser, error)
}

// Attachment categories and types C4C expects for a document attached to
// an object (CategoryCode "2" document, TypeCode "10001" standard attachment).
const (
	attachmentCategory = "2"
	attachmentType     = "10001"
)

// CreateAttachment uploads a to the parent object. The JSON body carries
// the content base64-encoded in Binary; it is produced while it is sent, so
// memory does not grow with the file.
func (c *Client) CreateAttachment(ctx context.Context, t Tenant, parentID string, a Attachment) (string, error) {
	head, err := json.Marshal(map[string]string{
		"ParentObjectID": parentID, "Name": a.Name, "MimeType": a.MimeType,
		"CategoryCode": attachmentCategory, "TypeCode": attachmentType,
	})
	if err != nil {
		return "", err
	}
	// {"...":"...", "Binary":"<base64>"}
	prefix := append(head[:len(head)-1:len(head)-1], []byte(`,"Binary":"`)...)
	suffix := []byte(`"}`)
	length := int64(-1)
	if a.Size >= 0 {
		length = int64(len(prefix)) + int64(base64.StdEncoding.EncodedLen(int(a.Size))) + int64(len(suffix))
	}
	body := func() (io.ReadCloser, error) {
		content, err := a.Open()
		if err != nil {
			return nil, err
		}
		return encodeBody(prefix, content, suffix), nil
	}
	res, err := c.modify(ctx, t, request{
		op: "odata_create_attachment", method: http.MethodPost, url: c.odataURL(t, c.cfg.AttachmentCollection),
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}},
		body:   body, length: length,
	})
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return "", errorFrom("odata_create_attachment", res)
	}
	defer res.Body.Close()
	var created struct {
		D struct {
			ObjectID string `json:"ObjectID"`
		} `json:"d"`
	}
	_ = json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&created)
	return created.D.ObjectID, nil
}

// encodeBody streams prefix, base64(content), suffix through a pipe.
func encodeBody(prefix []byte, content io.ReadCloser, suffix []byte) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer content.Close()
		if _, err := pw.Write(prefix); err != nil {
			pw.CloseWithError(err)
			return
		}
		enc := base64.NewEncoder(base64.StdEncoding, pw)
		if _, err := io.Copy(enc, content); err != nil {
			pw.CloseWithError(fmt.Errorf("read attachment: %w", err))
			return
		}
		if err := enc.Close(); err != nil {
			pw.CloseWithError(err)
			return
		}
		_, err := pw.Write(suffix)
		pw.CloseWithError(err)
	}()
	return pr
}
