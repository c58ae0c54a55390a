// Package c4cfake is an SAP Service Cloud (C4C) tenant for tests: the
// phone-service REST API and the OData v2 API, with basic auth, CSRF tokens
// and cookies, $filter look-ups, ETags (If-Match, 412), error bodies in
// SAP's formats, and injectable 429, 503 and slow answers. It records every
// request so tests can assert exactly what SAP received.
package c4cfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	// Body is the request body, cut at 1 MiB (see Attachment for the
	// content of uploads).
	Body []byte
}

// Fault is an answer the fake gives instead of handling a request.
type Fault struct {
	// Method and Path select requests (Path is a prefix); empty matches all.
	Method string
	Path   string
	// Status is answered (0: handle normally after Delay).
	Status     int
	RetryAfter string
	Delay      time.Duration
	// Times is how many requests it applies to (0: for ever).
	Times int
}

// PhoneCall is a phone-service call record.
type PhoneCall struct {
	ID         string
	DisplayID  string
	UpdatedOn  string
	Transcript string
	Patches    int
}

// Server is the fake tenant.
type Server struct {
	*httptest.Server
	User, Password string
	// PhoneServicePath is where the phone-service API lives.
	PhoneServicePath string

	mu       sync.Mutex
	requests []Request
	faults   []*Fault
	calls    map[string]*PhoneCall
	version  int
	odata    *odata
}

// New starts a fake tenant accepting user and password; it stops when the
// test ends.
func New(t testing.TB, user, password string) *Server {
	s := &Server{User: user, Password: password, PhoneServicePath: "/sap/c4c/api/v1/phone-service/", calls: map[string]*PhoneCall{}}
	s.odata = newOData(s)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Inject adds a fault.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Requests returns what the fake received, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// AddPhoneCall creates a call record for displayID and returns its id.
func (s *Server) AddPhoneCall(displayID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("PC%04d", len(s.calls)+1)
	s.calls[id] = &PhoneCall{ID: id, DisplayID: displayID, UpdatedOn: s.nextVersion()}
	return id
}

// Touch changes a call record as an agent editing it would: the next
// PATCH with the old If-Match gets 412.
func (s *Server) Touch(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[id].UpdatedOn = s.nextVersion()
}

// PhoneCall returns a copy of a call record.
func (s *Server) PhoneCall(id string) PhoneCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.calls[id]
}

func (s *Server) nextVersion() string {
	s.version++
	return time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Add(time.Duration(s.version) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()}
	body, _ := io.ReadAll(r.Body)
	rec.Body = body
	if len(rec.Body) > 1<<20 {
		rec.Body = rec.Body[:1<<20]
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	f := s.fault(r)
	s.mu.Unlock()
	if f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.Status != 0 {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			restError(w, f.Status, "INJECTED", http.StatusText(f.Status))
			return
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.User || pass != s.Password {
		w.Header().Set("WWW-Authenticate", `Basic realm="SAP NetWeaver Application Server"`)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, s.PhoneServicePath):
		s.phoneService(w, r, strings.TrimPrefix(r.URL.Path, s.PhoneServicePath), body)
	case strings.HasPrefix(r.URL.Path, s.odata.service):
		s.odata.serve(w, r, strings.TrimPrefix(r.URL.Path, s.odata.service), body)
	default:
		restError(w, http.StatusNotFound, "NOT_FOUND", "no such service")
	}
}

func (s *Server) fault(r *http.Request) *Fault {
	for i, f := range s.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(r.URL.Path, f.Path) {
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					s.faults = append(s.faults[:i], s.faults[i+1:]...)
				}
			}
			return f
		}
	}
	return nil
}

var displayFilter = regexp.MustCompile(`^externalId\.displayId eq '((?:[^']|'')*)'$`)

func (s *Server) phoneService(w http.ResponseWriter, r *http.Request, rest string, reqBody []byte) {
	switch {
	case rest == "phoneCalls" && r.Method == http.MethodGet:
		filter := r.URL.Query().Get("$filter")
		m := displayFilter.FindStringSubmatch(filter)
		if m == nil && filter != "" {
			restError(w, http.StatusBadRequest, "INVALID_FILTER", "unsupported $filter")
			return
		}
		s.mu.Lock()
		var out []map[string]any
		for _, c := range s.calls {
			if m == nil || c.DisplayID == strings.ReplaceAll(m[1], "''", "'") {
				out = append(out, callJSON(c))
			}
		}
		s.mu.Unlock()
		if top, err := strconv.Atoi(r.URL.Query().Get("$top")); err == nil && top < len(out) {
			out = out[:top]
		}
		if out == nil {
			out = []map[string]any{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": len(out), "value": out})
	case strings.HasPrefix(rest, "phoneCalls/") && r.Method == http.MethodPatch:
		id := strings.TrimPrefix(rest, "phoneCalls/")
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			restError(w, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "send application/json")
			return
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(reqBody, &body); err != nil {
			restError(w, http.StatusBadRequest, "INVALID_BODY", "body is not JSON")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := s.calls[id]
		switch {
		case !ok:
			restError(w, http.StatusNotFound, "NOT_FOUND", "phone call "+id+" not found")
		case r.Header.Get("If-Match") == "":
			restError(w, http.StatusPreconditionRequired, "PRECONDITION_REQUIRED", "If-Match is required")
		case r.Header.Get("If-Match") != c.UpdatedOn:
			restError(w, http.StatusPreconditionFailed, "PRECONDITION_FAILED", "the record was changed")
		default:
			var tr string
			if raw, ok := body["transcript"]; !ok || json.Unmarshal(raw, &tr) != nil {
				restError(w, http.StatusBadRequest, "INVALID_BODY", "transcript must be a string")
				return
			}
			c.Transcript = tr
			c.Patches++
			c.UpdatedOn = s.nextVersion()
			writeJSON(w, http.StatusOK, map[string]any{"value": callJSON(c)})
		}
	default:
		restError(w, http.StatusNotFound, "NOT_FOUND", "no such resource")
	}
}

func callJSON(c *PhoneCall) map[string]any {
	return map[string]any{
		"id":         c.ID,
		"externalId": map[string]any{"displayId": c.DisplayID},
		"adminData":  map[string]any{"createdOn": "2026-11-21T09:00:00.000Z", "updatedOn": c.UpdatedOn},
		"transcript": c.Transcript,
	}
}

func restError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
