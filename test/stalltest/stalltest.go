// Package stalltest opens stalled uploads: a request's headers announcing a
// body, a few bytes of it, and then nothing, the way an attacker holds a
// server's resources at the least cost to itself. The ingest bounds test
// and the stallgen command share it. It dials only the address it is given;
// use loopback.
package stalltest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Stall is one stalled upload on its own connection.
type Stall struct {
	conn net.Conn
	br   *bufio.Reader
}

// Open dials addr and sends a request of method to path with headers h, a
// Content-Length of length (chunked when length < 0), and the first sent
// bytes of the body.
func Open(addr, method, path string, h http.Header, length int64, sent int) (*Stall, error) {
	return OpenWith(&net.Dialer{}, addr, method, path, h, length, sent)
}

// OpenWith is Open dialling with d: from another local address
// (d.LocalAddr, such as 127.0.0.2), to stand for another client.
func OpenWith(d *net.Dialer, addr, method, path string, h http.Header, length int64, sent int) (*Stall, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, addr)
	if length >= 0 {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", length)
	} else {
		req.WriteString("Transfer-Encoding: chunked\r\n")
	}
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if length < 0 {
		fmt.Fprintf(&req, "%x\r\n", sent)
	}
	req.Write(bytes.Repeat([]byte{' '}, sent))
	if _, err := c.Write(req.Bytes()); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("write to %s: %w", addr, err)
	}
	return &Stall{conn: c, br: bufio.NewReader(c)}, nil
}

// Answer waits up to wait for the server's answer, without sending more of
// the body. Any answer it returns came before the body was sent.
func (s *Stall) Answer(wait time.Duration) (*http.Response, error) {
	if err := s.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, fmt.Errorf("deadline: %w", err)
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return resp, nil
}

// Closed reports whether the server closed the connection (read EOF)
// within wait.
func (s *Stall) Closed(wait time.Duration) bool {
	if err := s.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return false
	}
	var b [1]byte
	_, err := s.br.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Close hangs up.
func (s *Stall) Close() error { return s.conn.Close() }
