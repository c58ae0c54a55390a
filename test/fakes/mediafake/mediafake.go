// Package mediafake is a channel's media host for tests: it serves files
// at URLs that can expire (404), fail (5xx) or be slow.
package mediafake

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/fakes/blob"
)

// File is served content: Content, or Size synthetic bytes from Seed.
type File struct {
	Content     []byte
	Seed        uint64
	Size        int64
	ContentType string
	// Status, when set, is answered instead (404 for an expired URL).
	Status int
	Delay  time.Duration
}

// Server is the fake media host.
type Server struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string]File
	hits  map[string]int
}

// New starts the fake; it stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{files: map[string]File{}, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Put serves f at path and returns its URL.
func (s *Server) Put(path string, f File) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = f
	return s.URL + path
}

// Hits is how often path was requested.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.files[r.URL.Path]
	s.hits[r.URL.Path]++
	s.mu.Unlock()
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	switch {
	case !ok:
		http.NotFound(w, r)
	case f.Status != 0:
		http.Error(w, http.StatusText(f.Status), f.Status)
	default:
		w.Header().Set("Content-Type", f.ContentType)
		if f.Content != nil {
			w.Header().Set("Content-Length", strconv.Itoa(len(f.Content)))
			_, _ = w.Write(f.Content)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(f.Size, 10))
		_, _ = io.Copy(w, blob.Reader(f.Seed, f.Size))
	}
}
