package c4c

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// edmx is the part of an OData v2 $metadata document the check reads.
type edmx struct {
	Schemas []struct {
		Namespace   string `xml:"Namespace,attr"`
		EntityTypes []struct {
			Name       string `xml:"Name,attr"`
			Properties []struct {
				Name string `xml:"Name,attr"`
			} `xml:"Property"`
		} `xml:"EntityType"`
		Containers []struct {
			Sets []struct {
				Name string `xml:"Name,attr"`
				Type string `xml:"EntityType,attr"`
			} `xml:"EntitySet"`
		} `xml:"EntityContainer"`
	} `xml:"DataServices>Schema"`
}

// attachmentProperties are what CreateAttachment sends.
var attachmentProperties = []string{"ParentObjectID", "Name", "MimeType", "CategoryCode", "TypeCode", "Binary"}

// CheckOData reads the tenant's $metadata with the configured user and
// checks that the chat and attachment collections exist with the
// properties ccrelay uses. The error says what to fix.
func (c *Client) CheckOData(ctx context.Context, t Tenant) error {
	res, err := c.do(ctx, t, c.state(t), request{op: "odata_metadata", method: http.MethodGet, url: c.odataURL(t, "$metadata"), header: http.Header{"Accept": {"application/xml"}}, length: -1})
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		e := errorFrom("odata_metadata", res)
		if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
			return fmt.Errorf("%w (check CCRELAY_C4C_USER/PASSWORD and the communication arrangement)", e)
		}
		return e
	}
	defer res.Body.Close()
	var doc edmx
	if err := xml.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(&doc); err != nil {
		return fmt.Errorf("$metadata is not OData v2 EDMX: %w", err)
	}
	types := map[string]map[string]bool{}
	sets := map[string]string{}
	for _, s := range doc.Schemas {
		for _, et := range s.EntityTypes {
			props := map[string]bool{}
			for _, p := range et.Properties {
				props[p.Name] = true
			}
			types[s.Namespace+"."+et.Name] = props
		}
		for _, ct := range s.Containers {
			for _, set := range ct.Sets {
				sets[set.Name] = set.Type
			}
		}
	}
	need := map[string][]string{
		c.cfg.ChatCollection:       {"ObjectID", filterProperty(c.cfg.ChatFilter)},
		c.cfg.AttachmentCollection: attachmentProperties,
	}
	for set, props := range need {
		typ, ok := sets[set]
		if !ok {
			return fmt.Errorf("$metadata has no entity set %s (set CCRELAY_C4C_CHAT_COLLECTION / CCRELAY_C4C_ATTACHMENT_COLLECTION)", set)
		}
		for _, p := range props {
			if p != "" && !types[typ][p] {
				return fmt.Errorf("entity set %s (%s) has no property %s", set, typ, p)
			}
		}
	}
	return nil
}

// filterProperty is the property the chat filter compares
// ("ExternalID eq {contact_id}" -> ExternalID).
func filterProperty(filter string) string {
	f := strings.Fields(filter)
	if len(f) >= 3 && f[1] == "eq" {
		return f[0]
	}
	return ""
}

// CheckPhoneService calls the phone-service with the configured user.
func (c *Client) CheckPhoneService(ctx context.Context, t Tenant) error {
	q := url.Values{"$top": {"1"}}
	res, err := c.do(ctx, t, c.state(t), request{op: "phone_call_get", method: http.MethodGet, url: c.phoneURL(t, "phoneCalls?"+q.Encode()), header: http.Header{"Accept": {"application/json"}}, length: -1})
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return errorFrom("phone_call_get", res)
	}
	drain(res)
	return nil
}
