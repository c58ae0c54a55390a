package forward

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
)

// SinchType is the type part of the destination keys of Sinch
// Conversation API callbacks: "sinch/<service>".
const SinchType = "sinch"

// Config sets the processor. Its env tags are read with the CCRELAY_ prefix.
type Config struct {
	// URLs are Contact Pro's endpoints, by "type/service":
	// "sinch/eu=https://cp.example/...,twilio/us=https://cp.example/...".
	URLs Destinations `env:"FORWARD_URLS" help:"Contact Pro's endpoints: 'sinch/<service>=https://...,<type>/<service>=https://...'; empty: no relay"`
	// BasicUsers are the external users of Contact Pro's incoming
	// authentication, by the same keys: "sinch/eu=user:password".
	BasicUsers secret.Assignments `env:"FORWARD_BASIC_USERS" help:"secret: '<key>=<logon name>:<password>', Contact Pro's external user per destination"`
	// Partitions is how many conversation partitions are delivered side by
	// side: each holds one message in flight, so a conversation waiting on
	// a retry holds up only the conversations that share its partition.
	Partitions int `env:"FORWARD_PARTITIONS" envDefault:"16" help:"conversation groups delivered side by side (a power of two up to 256)"`
	// Timeout bounds one delivery to Contact Pro.
	Timeout time.Duration `env:"FORWARD_TIMEOUT" envDefault:"15s" help:"one delivery to Contact Pro"`
	// Backoff spaces the retries of a delivery Contact Pro did not take;
	// the last value repeats for as long as the stream keeps the event.
	Backoff []time.Duration `env:"FORWARD_BACKOFF" envDefault:"500ms,1s,2s,5s,10s" help:"wait before each retry of a delivery; the last repeats, with no limit"`
	// ParkAfter bounds how long the message at the head of a conversation
	// may fail before the conversation is parked (set aside, with every
	// later message of it, until 'ccrelay relay release' or 'drop'), so
	// the other conversations of its partition group go on. A
	// conversation is parked only while its destination answers (a HEAD
	// to its URL): while Contact Pro is down, or refuses the external
	// user, every conversation waits as before.
	ParkAfter Bound `env:"FORWARD_PARK_AFTER" envDefault:"attempts=20,age=15m" help:"park a conversation (its message and every later one) once its head failed that many times or that long since its first failure, whichever comes first, while the destination answers (a HEAD after that failure and after the one before): 'attempts=N', 'age=DURATION', both, or 'never'"`
	// ParkAfterBy overrides ParkAfter per destination.
	ParkAfterBy Bounds `env:"FORWARD_PARK_AFTER_BY" help:"'CCRELAY_FORWARD_PARK_AFTER' per destination: '<type>/<service>=attempts=N;age=DURATION' or '<type>/<service>=never', comma-separated"`

	// SinchSecrets and MessagingSecrets are ingest's webhook secrets
	// (CCRELAY_SINCH_WEBHOOK_SECRETS, CCRELAY_MESSAGING_SECRETS), with
	// which a delivery is signed again where the provider's signature
	// binds a time or a URL. Set from those at load, not read here.
	SinchSecrets     secret.Credentials `env:"-"`
	MessagingSecrets secret.Credentials `env:"-"`
}

// Destinations maps "type/service" keys to Contact Pro URLs.
type Destinations map[string]*url.URL

// UnmarshalText parses "key=url,key2=url2".
func (d *Destinations) UnmarshalText(b []byte) error {
	*d = Destinations{}
	if strings.TrimSpace(string(b)) == "" {
		return nil
	}
	for i, part := range strings.Split(string(b), ",") {
		key, raw, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || key == "" {
			return fmt.Errorf("entry %d: want type/service=<http(s) URL>", i+1)
		}
		if err := checkKey(key); err != nil {
			return err
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			return fmt.Errorf("%s: not a URL", key)
		case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
			return fmt.Errorf("%s: want an http(s) URL with a host", key)
		case u.User != nil:
			// A password in a URL ends up in logs; the external user has
			// its own secret setting.
			return fmt.Errorf("%s: no credentials in the URL; set CCRELAY_FORWARD_BASIC_USERS", key)
		case u.Fragment != "":
			return fmt.Errorf("%s: no fragment in the URL", key)
		}
		if _, dup := (*d)[key]; dup {
			return fmt.Errorf("%s appears twice", key)
		}
		(*d)[key] = u
	}
	return nil
}

// Keys returns the keys, sorted.
func (d Destinations) Keys() []string { return slices.Sorted(maps.Keys(d)) }

func (bs Bounds) keys() []string { return slices.Sorted(maps.Keys(bs)) }

// ParkBound is the bound of destination key.
func (c Config) ParkBound(key string) Bound {
	if b, ok := c.ParkAfterBy[key]; ok {
		return b
	}
	return c.ParkAfter
}

// checkKey checks "sinch/<service>" or "<messaging type>/<service>".
func checkKey(key string) error {
	typ, service, ok := strings.Cut(key, "/")
	if !ok || service == "" || len(service) > 64 {
		return fmt.Errorf("%q: want type/service", key)
	}
	if typ != SinchType && !messages.IsMessagingType(typ) {
		return fmt.Errorf("%q: type must be sinch or one of %s", key, strings.Join(messages.MessagingTypes(), ", "))
	}
	if typ != SinchType && messages.EscapeToken(service) != service {
		return fmt.Errorf("%q: the service must be letters, digits, '-' or '_'", key)
	}
	return nil
}

// Validate checks the fields against each other and against the webhook
// secrets. Errors name the variable.
func (c Config) Validate() error {
	p := c.Partitions
	if p < 1 || p > messages.Partitions || p&(p-1) != 0 {
		return fmt.Errorf("CCRELAY_FORWARD_PARTITIONS: %d is not a power of two from 1 to %d", p, messages.Partitions)
	}
	if c.Timeout <= 0 || c.Timeout > parking.LeaseTTL/2 {
		// A release holds its lease through each delivery: one that
		// outlasted it would let another replica take the release over
		// and send the same message.
		return fmt.Errorf("CCRELAY_FORWARD_TIMEOUT: %s is not between 0 and %s (half the lease of a release)", c.Timeout, parking.LeaseTTL/2)
	}
	if len(c.Backoff) == 0 {
		return errors.New("CCRELAY_FORWARD_BACKOFF: needs at least one duration")
	}
	for _, d := range c.Backoff {
		if d <= 0 {
			return errors.New("CCRELAY_FORWARD_BACKOFF: durations must be positive")
		}
	}
	for _, key := range c.ParkAfterBy.keys() {
		if _, ok := c.URLs[key]; !ok {
			return fmt.Errorf("CCRELAY_FORWARD_PARK_AFTER_BY: %q has no URL in CCRELAY_FORWARD_URLS", key)
		}
	}
	for _, key := range c.BasicUsers.Names() {
		if _, ok := c.URLs[key]; !ok {
			return fmt.Errorf("CCRELAY_FORWARD_BASIC_USERS: %q has no URL in CCRELAY_FORWARD_URLS", key)
		}
		if _, _, ok := c.BasicUsers.UserPassword(key); !ok {
			return fmt.Errorf("CCRELAY_FORWARD_BASIC_USERS: %q: want type/service=user:password", key)
		}
	}
	for _, key := range c.URLs.Keys() {
		typ, service, _ := strings.Cut(key, "/")
		switch {
		case typ == SinchType && c.SinchSecrets[service] == "":
			return fmt.Errorf("CCRELAY_FORWARD_URLS: %q: no CCRELAY_SINCH_WEBHOOK_SECRETS entry for %q, so nothing is received to forward, and nothing could be signed for Contact Pro", key, service)
		case typ == messages.MessagingTwilio && c.MessagingSecrets[key] == "":
			return fmt.Errorf("CCRELAY_FORWARD_URLS: %q: no CCRELAY_MESSAGING_SECRETS entry to sign the delivery with", key)
		}
	}
	return nil
}
