// Package cmifake is a Sinch Contact Pro Contact Management Interface
// (CMI) for tests, serving the resources ccrelay assumes by default (see
// processors/attachments.CMIConfig): chats, their messages and the bytes of
// attachments, behind basic auth and an API key, with injectable failures.
package cmifake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ccrelay/ccrelay/test/fakes/blob"
)

// BasePath is where the fake CMI lives, so cmi_url is URL+BasePath.
const BasePath = "/acme/cmi"

// File is an attachment: Content, or Size synthetic bytes from Seed.
type File struct {
	ID, Name, MimeType string
	Content            []byte
	Seed               uint64
	Size               int64
}

func (f File) size() int64 {
	if f.Content != nil {
		return int64(len(f.Content))
	}
	return f.Size
}

// Message is a chat message.
type Message struct {
	ID, ExternalID string
	Attachments    []File
}

// Chat is a chat of a contact.
type Chat struct {
	ContactID    string
	QueueAddress string
	Direct       bool
	Messages     []Message
}

// Request is one request the fake received.
type Request struct {
	Path, Query string
	Header      http.Header
}

// Server is the fake CMI.
type Server struct {
	*httptest.Server
	User, Password, APIKey string

	mu       sync.Mutex
	chats    map[string]*Chat
	requests []Request
	// failures: path prefix -> status to answer, count
	failures map[string][2]int
}

// New starts the fake; it stops when the test ends.
func New(t testing.TB, user, password, apiKey string) *Server {
	s := &Server{User: user, Password: password, APIKey: apiKey, chats: map[string]*Chat{}, failures: map[string][2]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// CMIURL is the cmi_url to put in a chat-attachments call.
func (s *Server) CMIURL() string { return s.URL + BasePath }

// AddChat stores a chat.
func (s *Server) AddChat(c Chat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chats[c.ContactID] = &c
}

// Fail answers the next times requests under path (after BasePath) with status.
func (s *Server) Fail(path string, status, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[BasePath+path] = [2]int{status, times}
}

// Requests returns what the fake received.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
	for p, f := range s.failures {
		if strings.HasPrefix(r.URL.Path, p) && f[1] > 0 {
			s.failures[p] = [2]int{f[0], f[1] - 1}
			s.mu.Unlock()
			http.Error(w, http.StatusText(f[0]), f[0])
			return
		}
	}
	s.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != s.User || p != s.Password || r.Header.Get("x-api-key") != s.APIKey {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, BasePath+"/")
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(rest, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(parts) == 2 && parts[0] == "chats":
		c, ok := s.chats[parts[1]]
		if !ok {
			http.NotFound(w, r)
			return
		}
		s.json(w, r, map[string]any{"id": c.ContactID, "direct": c.Direct, "queueAddress": c.QueueAddress})
	case len(parts) == 1 && parts[0] == "chatMessages":
		c, ok := s.chats[r.URL.Query().Get("chatId")]
		if !ok {
			s.json(w, r, map[string]any{"value": []any{}})
			return
		}
		var out []map[string]any
		for _, m := range c.Messages {
			var atts []map[string]any
			for _, f := range m.Attachments {
				atts = append(atts, map[string]any{"id": f.ID, "name": f.Name, "mimeType": f.MimeType, "size": f.size()})
			}
			out = append(out, map[string]any{"id": m.ID, "externalId": m.ExternalID, "attachments": atts})
		}
		s.json(w, r, map[string]any{"value": out})
	case len(parts) == 4 && parts[0] == "chatMessages" && parts[2] == "attachments":
		for _, c := range s.chats {
			for _, m := range c.Messages {
				for _, f := range m.Attachments {
					if m.ID == parts[1] && f.ID == parts[3] {
						w.Header().Set("Content-Type", f.MimeType)
						w.Header().Set("Content-Length", strconv.FormatInt(f.size(), 10))
						if f.Content != nil {
							_, _ = w.Write(f.Content)
						} else {
							_, _ = io.Copy(w, blob.Reader(f.Seed, f.Size))
						}
						return
					}
				}
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) json(w http.ResponseWriter, r *http.Request, v any) {
	if !strings.Contains(r.Header.Get("Accept"), "application/json") {
		http.Error(w, "not acceptable", http.StatusNotAcceptable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
