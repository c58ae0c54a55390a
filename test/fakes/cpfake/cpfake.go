// Package cpfake is a Contact Pro SMS Server for tests: the inbound
// endpoints of its messaging services, behind the incoming authentication
// of an external user (HTTP basic), checking each provider's signature the
// way Contact Pro does (Sinch's with a clock check, Twilio's over the URL
// it was called at, Messenger's over the body), and able to be down.
package cpfake

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
)

// Service is one messaging service of the fake, at /sms/<type>/<service>.
type Service struct {
	// Type is "sinch" (Conversation API) or a messaging service type.
	Type, Name string
	// Secret checks the provider's signature: the Sinch webhook secret,
	// Twilio's auth token, Messenger's app secret; "" checks none.
	Secret string
}

// Path is where s is served.
func (s Service) Path() string { return "/sms/" + s.Type + "/" + s.Name }

// Received is one delivery Contact Pro accepted.
type Received struct {
	Service      string // type/name
	EventID      string
	Conversation string
	Header       http.Header
	Body         []byte
	At           time.Time
}

// Server is the fake Contact Pro SMS Server.
type Server struct {
	*httptest.Server
	user, password string
	services       map[string]Service

	mu    sync.Mutex
	delay time.Duration
	down  int // status answered while down; 0 when up
	// upAfter: come back up right after refusing the next delivery.
	upAfter  bool
	reject   map[string]int
	received []Received
	refused  map[string]int // by reason
	heads    int
	attempts map[string]int // POSTs by event id
}

// New starts the fake with one external user and services.
func New(t testing.TB, user, password string, services ...Service) *Server {
	s := &Server{user: user, password: password, services: map[string]Service{}, reject: map[string]int{}, refused: map[string]int{}, attempts: map[string]int{}}
	for _, svc := range services {
		s.services[svc.Path()] = svc
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL of service s.
func (s *Server) URLOf(svc Service) string { return s.URL + svc.Path() }

// Down makes every delivery answer status (503: an upgrade, 429:
// overloaded) until Up.
func (s *Server) Down(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = status
}

// SetDelay makes every answer take d, like a loaded SMS Server.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetPassword changes the external user's password.
func (s *Server) SetPassword(password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.password = password
}

// UpAfterNextRefusal brings the fake back up right after it refused one
// more delivery: whoever asks at once whether it answers hears that it
// does, about a delivery it refused while down.
func (s *Server) UpAfterNextRefusal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upAfter = true
}

// Up takes deliveries again.
func (s *Server) Up() { s.Down(0) }

// Reject answers status to the delivery of the event with id, every time.
func (s *Server) Reject(eventID string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject[eventID] = status
}

// Received returns the deliveries accepted so far, in arrival order.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Attempts returns how many deliveries of the event with id reached the
// fake past its external user check, accepted or not.
func (s *Server) Attempts(eventID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[eventID]
}

// Heads returns how many HEAD requests the fake answered (a relay asking
// whether Contact Pro answers).
func (s *Server) Heads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heads
}

// Refused returns how many deliveries were refused, by reason.
func (s *Server) Refused() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.refused {
		out[k] = v
	}
	return out
}

func (s *Server) refuse(w http.ResponseWriter, status int, reason string) {
	s.mu.Lock()
	s.refused[reason]++
	s.mu.Unlock()
	http.Error(w, reason, status)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	svc, ok := s.services[r.URL.Path]
	if !ok {
		s.refuse(w, http.StatusNotFound, "no such messaging service")
		return
	}
	s.mu.Lock()
	user, password := s.user, s.password
	s.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
		s.refuse(w, http.StatusUnauthorized, "external user refused")
		return
	}
	s.mu.Lock()
	down, reject, delay := s.down, s.reject[r.Header.Get("X-Ccrelay-Event-Id")], s.delay
	s.mu.Unlock()
	if r.Method == http.MethodHead {
		// Down is down for every request, as an SMS Server being
		// upgraded (or its load balancer) answers them all.
		s.mu.Lock()
		s.heads++
		s.mu.Unlock()
		if down != 0 {
			w.WriteHeader(down)
			return
		}
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, "body")
		return
	}
	s.mu.Lock()
	s.attempts[r.Header.Get("X-Ccrelay-Event-Id")]++
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if down != 0 {
		s.mu.Lock()
		if s.upAfter {
			s.down, s.upAfter = 0, false
		}
		s.mu.Unlock()
		s.refuse(w, down, "down")
		return
	}
	if reason := s.verify(svc, r, body); reason != "" {
		s.refuse(w, http.StatusForbidden, reason)
		return
	}
	if reject != 0 {
		s.refuse(w, reject, "rejected by the test")
		return
	}
	s.mu.Lock()
	s.received = append(s.received, Received{Service: svc.Type + "/" + svc.Name, EventID: r.Header.Get("X-Ccrelay-Event-Id"), Conversation: Conversation(svc.Type, svc.Name, body), Header: r.Header.Clone(), Body: body, At: time.Now()})
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// verify checks the provider's signature as Contact Pro would; it returns
// why it fails, or "".
func (s *Server) verify(svc Service, r *http.Request, body []byte) string {
	if svc.Secret == "" {
		return ""
	}
	h := r.Header
	switch svc.Type {
	case "sinch", messages.MessagingSinchSMS:
		ts := h.Get(signature.SinchHeaderTimestamp)
		if !signature.SinchVerify(svc.Secret, body, h.Get(signature.SinchHeaderNonce), ts, h.Get(signature.SinchHeaderSignature)) {
			return "sinch signature"
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
			return "sinch timestamp"
		}
	case messages.MessagingTwilio:
		form, err := url.ParseQuery(string(body))
		if err != nil || h.Get("Content-Type") != messages.ContentTypeForm {
			return "twilio form"
		}
		if !signature.TwilioVerify(svc.Secret, s.URL+r.URL.RequestURI(), form, h.Get(signature.HeaderTwilioSignature)) {
			return "twilio signature"
		}
	case messages.MessagingFacebook:
		if !signature.HubVerify(svc.Secret, body, h.Get(signature.HeaderHubSignature256)) {
			return "hub signature"
		}
	}
	return ""
}

// Conversation is the conversation of a delivered body, read the way
// ingest reads it: what the order is checked by.
func Conversation(typ, service string, body []byte) string {
	if typ == "sinch" {
		cb, err := messages.DecodeSinchCallback(body)
		if err != nil {
			return "?"
		}
		return cb.SinchConversation()
	}
	w, err := messages.DecodeWebhook(typ, service, body)
	if err != nil {
		return "?"
	}
	return strings.Clone(w.Conversation)
}
