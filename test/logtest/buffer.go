// Package logtest holds what tests need to read the logs of code under
// test.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for the concurrent writes of a logger and
// the reads of a test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
