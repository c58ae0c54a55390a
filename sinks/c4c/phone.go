package c4c

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// PhoneCall is a phone-service call record, as far as ccrelay needs it.
type PhoneCall struct {
	ID string `json:"id"`
	// Transcript is the record's current transcript (the summary).
	Transcript string `json:"transcript"`
	AdminData  struct {
		// UpdatedOn is the record's version: PATCH sends it as If-Match.
		UpdatedOn string `json:"updatedOn"`
	} `json:"adminData"`
}

func (c *Client) phoneURL(t Tenant, rest string) string {
	return t.URL + "/" + trimSlashes(c.cfg.PhoneService) + "/" + rest
}

// FindPhoneCall finds the call record whose externalId.displayId is
// displayID (the Amazon Connect contact id). ErrNotFound when there is none
// (yet: the CTI adapter may not have written it).
func (c *Client) FindPhoneCall(ctx context.Context, t Tenant, displayID string) (*PhoneCall, error) {
	q := url.Values{"$filter": {"externalId.displayId eq " + quote(displayID)}}
	res, err := c.do(ctx, t, c.state(t), request{
		op: "phone_call_get", method: http.MethodGet, url: c.phoneURL(t, "phoneCalls?"+q.Encode()),
		header: http.Header{"Accept": {"application/json"}}, length: -1,
	})
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, errorFrom("phone_call_get", res)
	}
	defer res.Body.Close()
	var list struct {
		Value []PhoneCall `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&list); err != nil {
		return nil, &Error{Op: "phone_call_get", Status: res.StatusCode, Err: fmt.Errorf("decode answer: %w", err)}
	}
	if len(list.Value) == 0 || list.Value[0].ID == "" {
		return nil, fmt.Errorf("phone call %s: %w", displayID, ErrNotFound)
	}
	return &list.Value[0], nil
}

// SetTranscript writes text as the call's transcript, conditional on the
// record being unchanged since it was read (If-Match: adminData.updatedOn).
// A 412 means it changed: read again and retry.
func (c *Client) SetTranscript(ctx context.Context, t Tenant, call *PhoneCall, text string) error {
	body, err := json.Marshal(map[string]string{"transcript": text})
	if err != nil {
		return err
	}
	res, err := c.do(ctx, t, c.state(t), request{
		op: "phone_call_patch", method: http.MethodPatch, url: c.phoneURL(t, "phoneCalls/"+url.PathEscape(call.ID)),
		header: http.Header{
			"Content-Type": {"application/json"},
			"Accept":       {"application/json"},
			"If-Match":     {call.AdminData.UpdatedOn},
		},
		body:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		length: int64(len(body)),
	})
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return errorFrom("phone_call_patch", res)
	}
	drain(res)
	return nil
}

func trimSlashes(s string) string {
	for len(s) > 0 && s[0] == '/' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
