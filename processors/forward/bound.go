package forward

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bound is how long the message at the head of a conversation may fail
// before the conversation is parked: a number of attempts, an age (since
// its first failed attempt), or both, whichever is reached first. The zero
// Bound never parks.
type Bound struct {
	// Attempts parks after that many failed deliveries; 0: no limit.
	Attempts int
	// Age parks once the first failed delivery is that old; 0: no limit.
	Age time.Duration
}

// Never reports whether b parks nothing.
func (b Bound) Never() bool { return b.Attempts == 0 && b.Age == 0 }

// String is b as it is configured.
func (b Bound) String() string {
	var parts []string
	if b.Attempts > 0 {
		parts = append(parts, "attempts="+strconv.Itoa(b.Attempts))
	}
	if b.Age > 0 {
		parts = append(parts, "age="+b.Age.String())
	}
	if len(parts) == 0 {
		return "never"
	}
	return strings.Join(parts, ",")
}

// UnmarshalText parses "attempts=N", "age=D", both (separated by ',' or
// ';'), or "never".
func (b *Bound) UnmarshalText(text []byte) error {
	v, err := parseBound(string(text), ",;")
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func parseBound(s, seps string) (Bound, error) {
	s = strings.TrimSpace(s)
	if s == "never" {
		return Bound{}, nil
	}
	var b Bound
	seen := map[string]bool{}
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Bound{}, fmt.Errorf("%q: want attempts=N, age=DURATION, both, or never", part)
		}
		if seen[name] {
			return Bound{}, fmt.Errorf("%s appears twice", name)
		}
		seen[name] = true
		switch name {
		case "attempts":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return Bound{}, fmt.Errorf("attempts=%s: want a whole number of at least 1", val)
			}
			b.Attempts = n
		case "age":
			d, err := time.ParseDuration(val)
			if err != nil || d < time.Second {
				return Bound{}, fmt.Errorf("age=%s: want a duration of at least 1s", val)
			}
			b.Age = d
		default:
			return Bound{}, fmt.Errorf("%q: want attempts=N, age=DURATION, both, or never", part)
		}
	}
	if b.Never() {
		return Bound{}, fmt.Errorf("%q: want attempts=N, age=DURATION, both, or never", s)
	}
	return b, nil
}

// Bounds overrides the bound per destination ("type/service").
type Bounds map[string]Bound

// UnmarshalText parses "twilio/us=attempts=5;age=2m,sinch/eu=never":
// entries separated by ',', the two limits of one entry by ';'.
func (bs *Bounds) UnmarshalText(text []byte) error {
	*bs = Bounds{}
	if strings.TrimSpace(string(text)) == "" {
		return nil
	}
	for i, entry := range strings.Split(string(text), ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if !ok || key == "" {
			return fmt.Errorf("entry %d: want type/service=attempts=N;age=DURATION (or never)", i+1)
		}
		if err := checkKey(key); err != nil {
			return err
		}
		if _, dup := (*bs)[key]; dup {
			return fmt.Errorf("%s appears twice", key)
		}
		b, err := parseBound(val, ";")
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		(*bs)[key] = b
	}
	return nil
}

// exceeded reports whether a head that failed attempts times, the first
// failure at first, has reached b at now, and says which limit.
func (b Bound) exceeded(attempts uint64, first, now time.Time) (string, bool) {
	switch {
	case b.Attempts > 0 && attempts >= uint64(b.Attempts): // #nosec G115 -- parseBound keeps Attempts positive
		return ReasonAttempts, true
	case b.Age > 0 && !first.IsZero() && now.Sub(first) >= b.Age:
		return ReasonAge, true
	}
	return "", false
}

// Why a conversation was parked: the reason label of
// ccrelay_forward_parks_total.
const (
	ReasonAttempts = "attempts"
	ReasonAge      = "age"
)
