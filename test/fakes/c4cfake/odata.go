package c4cfake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Attachment is an attachment created through OData.
type Attachment struct {
	ObjectID       string
	ParentObjectID string
	Name           string
	MimeType       string
	CategoryCode   string
	TypeCode       string
	Size           int
	SHA256         string
	// Content is kept for attachments up to 1 MiB.
	Content []byte
}

// odata is the OData v2 API: one collection of chat activities and one of
// attachments, CSRF-protected like the real service.
type odata struct {
	s                    *Server
	service              string
	chatCollection       string
	attachmentCollection string
	// activities: ObjectID -> ExternalID (the Contact Pro contact id)
	activities  map[string]string
	attachments []*Attachment
	// sessions: SAP_SESSIONID cookie -> CSRF token
	sessions map[string]string
	hidden   []string
}

func newOData(s *Server) *odata {
	return &odata{
		s: s, service: "/sap/c4c/odata/v1/c4codataapi/",
		chatCollection: "SocialMediaActivityCollection", attachmentCollection: "SocialMediaActivityAttachmentFolderCollection",
		activities: map[string]string{}, sessions: map[string]string{},
	}
}

// AddChatActivity creates the activity of a Contact Pro chat and returns
// its ObjectID.
func (s *Server) AddChatActivity(contactID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("00163E0A%024d", len(s.odata.activities)+1)
	s.odata.activities[id] = contactID
	return id
}

// Attachments returns the attachments of a parent object.
func (s *Server) Attachments(parentID string) []Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Attachment
	for _, a := range s.odata.attachments {
		if a.ParentObjectID == parentID {
			out = append(out, *a)
		}
	}
	return out
}

// ExpireSessions invalidates every CSRF token, as a session timeout does.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.odata.sessions = map[string]string{}
}

func odataError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": map[string]any{"lang": "en", "value": msg}}})
}

func (o *odata) serve(w http.ResponseWriter, r *http.Request, rest string, body []byte) {
	collection := strings.TrimSuffix(rest, "/")
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("X-Csrf-Token"), "fetch") {
		o.issueToken(w)
	}
	switch {
	case r.Method == http.MethodGet && collection == "$metadata":
		o.metadata(w)
	case r.Method == http.MethodGet && collection == "":
		writeJSON(w, http.StatusOK, map[string]any{"d": map[string]any{"EntitySets": []string{o.chatCollection, o.attachmentCollection}}})
	case r.Method == http.MethodGet:
		o.query(w, r, collection)
	case r.Method == http.MethodPost && collection == o.attachmentCollection:
		if !o.csrfOK(r) {
			w.Header().Set("X-Csrf-Token", "Required")
			odataError(w, http.StatusForbidden, "CSRF", "CSRF token validation failed")
			return
		}
		o.createAttachment(w, body)
	case r.Method == http.MethodPost:
		odataError(w, http.StatusMethodNotAllowed, "METHOD", "not supported on "+collection)
	default:
		odataError(w, http.StatusNotFound, "NOT_FOUND", "resource not found")
	}
}

func (o *odata) issueToken(w http.ResponseWriter) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	session, token := hex.EncodeToString(b[:6]), base64.StdEncoding.EncodeToString(b[6:])
	o.s.mu.Lock()
	o.sessions[session] = token
	o.s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "SAP_SESSIONID_FAKE", Value: session, Path: "/"}) // #nosec G124 -- the fake tenant serves plain http on loopback
	w.Header().Set("X-Csrf-Token", token)
}

// csrfOK accepts a token only with the session cookie it was issued for.
func (o *odata) csrfOK(r *http.Request) bool {
	ck, err := r.Cookie("SAP_SESSIONID_FAKE")
	if err != nil {
		return false
	}
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	tok, ok := o.sessions[ck.Value]
	return ok && tok != "" && tok == r.Header.Get("X-Csrf-Token")
}

var eqTerm = regexp.MustCompile(`^\s*(\w+) eq '((?:[^']|'')*)'\s*$`)

// parseFilter understands "F eq 'v' [and G eq 'w' ...]", which is all
// ccrelay sends; anything else is refused as the real service would refuse
// a syntax error.
func parseFilter(f string) (map[string]string, bool) {
	terms := map[string]string{}
	for _, part := range strings.Split(f, " and ") {
		m := eqTerm.FindStringSubmatch(part)
		if m == nil {
			return nil, false
		}
		terms[m[1]] = strings.ReplaceAll(m[2], "''", "'")
	}
	return terms, true
}

func (o *odata) query(w http.ResponseWriter, r *http.Request, collection string) {
	q := r.URL.Query()
	if q.Get("$format") != "json" && !strings.Contains(r.Header.Get("Accept"), "json") {
		odataError(w, http.StatusNotAcceptable, "FORMAT", "only JSON here")
		return
	}
	terms, ok := parseFilter(q.Get("$filter"))
	if !ok {
		odataError(w, http.StatusBadRequest, "SY/530", "Invalid filter expression: '"+q.Get("$filter")+"'")
		return
	}
	var rows []map[string]any
	o.s.mu.Lock()
	switch collection {
	case o.chatCollection:
		for id, ext := range o.activities {
			row := map[string]any{"ObjectID": id, "ExternalID": ext}
			if matchRow(row, terms) {
				rows = append(rows, row)
			}
		}
	case o.attachmentCollection:
		for _, a := range o.attachments {
			row := map[string]any{"ObjectID": a.ObjectID, "ParentObjectID": a.ParentObjectID, "Name": a.Name, "MimeType": a.MimeType}
			if matchRow(row, terms) {
				rows = append(rows, row)
			}
		}
	default:
		o.s.mu.Unlock()
		odataError(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", "Resource not found for segment '"+collection+"'")
		return
	}
	o.s.mu.Unlock()
	if top, err := strconv.Atoi(q.Get("$top")); err == nil && top < len(rows) {
		rows = rows[:top]
	}
	if rows == nil {
		rows = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"d": map[string]any{"results": rows}})
}

func matchRow(row map[string]any, terms map[string]string) bool {
	for k, v := range terms {
		if s, _ := row[k].(string); s != v {
			return false
		}
	}
	return true
}

func (o *odata) createAttachment(w http.ResponseWriter, body []byte) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		odataError(w, http.StatusBadRequest, "SY/530", "Syntax error in JSON body")
		return
	}
	str := func(k string) string { s, _ := in[k].(string); return s }
	for _, k := range []string{"ParentObjectID", "Name", "MimeType", "CategoryCode", "TypeCode", "Binary"} {
		if str(k) == "" {
			odataError(w, http.StatusBadRequest, "MISSING", "Property "+k+" is required")
			return
		}
	}
	content, err := base64.StdEncoding.DecodeString(str("Binary"))
	if err != nil {
		odataError(w, http.StatusBadRequest, "BINARY", "Binary is not valid base64")
		return
	}
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	if _, ok := o.activities[str("ParentObjectID")]; !ok {
		odataError(w, http.StatusBadRequest, "PARENT", "Parent object "+str("ParentObjectID")+" does not exist")
		return
	}
	sum := sha256.Sum256(content)
	a := &Attachment{
		ObjectID: fmt.Sprintf("00163E0B%024d", len(o.attachments)+1), ParentObjectID: str("ParentObjectID"), Name: str("Name"),
		MimeType: str("MimeType"), CategoryCode: str("CategoryCode"), TypeCode: str("TypeCode"), Size: len(content), SHA256: hex.EncodeToString(sum[:]),
	}
	if len(content) <= 1<<20 {
		a.Content = content
	}
	o.attachments = append(o.attachments, a)
	writeJSON(w, http.StatusCreated, map[string]any{"d": map[string]any{
		"ObjectID": a.ObjectID, "ParentObjectID": a.ParentObjectID, "Name": a.Name, "MimeType": a.MimeType,
		"CategoryCode": a.CategoryCode, "TypeCode": a.TypeCode,
	}})
}

// RemoveFromMetadata hides an entity set or a property (Type.Property)
// from $metadata, as a tenant without that extension would.
func (s *Server) RemoveFromMetadata(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.odata.hidden = append(s.odata.hidden, name)
}

func (o *odata) metadata(w http.ResponseWriter) {
	o.s.mu.Lock()
	hidden := map[string]bool{}
	for _, h := range o.hidden {
		hidden[h] = true
	}
	o.s.mu.Unlock()
	type entity struct {
		set, typ string
		props    []string
	}
	entities := []entity{
		{o.chatCollection, "SocialMediaActivity", []string{"ObjectID", "ExternalID", "Subject"}},
		{o.attachmentCollection, "SocialMediaActivityAttachmentFolder", []string{"ObjectID", "ParentObjectID", "Name", "MimeType", "CategoryCode", "TypeCode", "Binary"}},
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">`)
	b.WriteString(`<edmx:DataServices m:DataServiceVersion="2.0" xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">`)
	b.WriteString(`<Schema Namespace="cust" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">`)
	for _, e := range entities {
		b.WriteString(`<EntityType Name="` + e.typ + `"><Key><PropertyRef Name="ObjectID"/></Key>`)
		for _, p := range e.props {
			if !hidden[e.typ+"."+p] {
				b.WriteString(`<Property Name="` + p + `" Type="Edm.String"/>`)
			}
		}
		b.WriteString(`</EntityType>`)
	}
	b.WriteString(`<EntityContainer Name="c4codataapi" m:IsDefaultEntityContainer="true">`)
	for _, e := range entities {
		if !hidden[e.set] {
			b.WriteString(`<EntitySet Name="` + e.set + `" EntityType="cust.` + e.typ + `"/>`)
		}
	}
	b.WriteString(`</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>`)
	w.Header().Set("Content-Type", "application/xml")
	_, _ = w.Write([]byte(b.String()))
}
