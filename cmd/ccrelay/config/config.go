// Package config loads ccrelay's configuration from CCRELAY_* environment
// variables with caarlos0/env. Every variable can instead be read from a
// file named by the same variable with _FILE appended (for secrets mounted
// by Docker or Kubernetes). Unknown CCRELAY_ variables and bad values stop
// start-up with one line that names the variable.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/processors/service"
)

// Prefix starts every variable.
const Prefix = "CCRELAY_"

// Process holds the settings of the process itself.
type Process struct {
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"info" help:"'debug', 'info', 'warn' or 'error': 'debug' logs every stored event (ids only), 'info' every refusal"`
	// MetricsAddr is the Prometheus listener.
	MetricsAddr string `env:"METRICS_ADDR" envDefault:":9090" help:"Prometheus listener ('/metrics')"`
	// Pprof serves Go's profiler under /debug/pprof/ on a listener of its
	// own, for finding where time goes under load.
	Pprof bool `env:"PPROF" envDefault:"false" help:"serve Go's profiler under '/debug/pprof/' on a listener of its own, for finding where time goes under load"`
	// PprofAddr is the profiler's listener: loopback only, as profiles
	// and traces show what the process holds.
	PprofAddr string `env:"PPROF_ADDR" envDefault:"127.0.0.1:6060" help:"the profiler's listener: loopback only, as profiles show what the process holds"`
}

// Seal holds the keys that seal credentials arriving with requests.
type Seal struct {
	// Keys: "id:base64key,..."; the first seals, all open. Empty drops
	// such credentials instead.
	Keys seal.KeyRing `env:"SEAL_KEYS" help:"secret: 'id:base64key,...' (32-byte keys, 'openssl rand -base64 32') sealing credentials that arrive with Contact Pro calls; the first seals, all open, so keys rotate by prepending; empty drops such credentials"`
}

// Config is the whole configuration.
type Config struct {
	Process    Process
	Broker     broker.Config
	Ingest     server.Settings
	Processors service.Settings
	seal       Seal
}

// section is one struct of settings, read alone (see describe), and the
// heading its settings are listed under in --help and the README.
type section struct {
	group string
	ptr   any
}

func (c *Config) sections() []section {
	in, pr := &c.Ingest, &c.Processors
	return []section{
		{"Process", &c.Process},
		{"NATS", &c.Broker},
		{"Streams", &in.Streams},
		{"Ingest HTTP", &in.HTTP},
		{"Sinch Conversation API", &in.Sinch},
		{"Contact Pro", &in.ContactPro},
		{"Amazon Connect", &in.Connect},
		{"Messaging services", &in.Messaging},
		{"OAuth", &in.OAuth},
		{"Refused credentials", &in.Throttle},
		{"Sealed credentials", &c.seal},
		{"Processors", &pr.Runtime},
		{"SAP C4C", &pr.C4C},
		{"attachments processor", &pr.Attachments},
		{"summaries processor", &pr.Summaries},
		{"deliveries processor", &pr.Deliveries},
		{"forward processor (the relay to Contact Pro)", &pr.Forward},
		{"Outbound requests", &pr.Egress},
	}
}

// Load reads the configuration from environ (os.Environ() form). readFile
// reads _FILE variables; nil uses os.ReadFile.
func Load(environ []string, readFile func(string) ([]byte, error)) (*Config, error) {
	if readFile == nil {
		readFile = os.ReadFile
	}
	var cfg Config
	known := map[string]bool{}
	for _, v := range Variables() {
		known[v.Name] = true
	}

	vars := map[string]string{}
	var names []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, Prefix) {
			vars[k] = v
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		base, isFile := strings.CutSuffix(k, "_FILE")
		switch {
		case known[k]:
		case isFile && known[base]:
			if _, both := vars[base]; both {
				return nil, fmt.Errorf("%s: set either %s or %s, not both", base, base, k)
			}
			b, err := readFile(vars[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			vars[base] = strings.TrimRight(string(b), "\r\n")
			delete(vars, k)
		default:
			return nil, fmt.Errorf("%s: unknown setting (run 'ccrelay serve --help' for the list)", k)
		}
	}

	opts := env.Options{Environment: vars, Prefix: Prefix}
	for _, sec := range cfg.sections() {
		if err := env.ParseWithOptions(sec.ptr, opts); err != nil {
			return nil, describe(sec.ptr, err)
		}
	}
	cfg.Ingest.SealKeys = cfg.seal.Keys
	cfg.Processors.Streams = cfg.Ingest.Streams
	cfg.Processors.SealKeys = cfg.seal.Keys
	// The relay signs deliveries again with the secrets ingest verifies.
	cfg.Processors.Forward.SinchSecrets = cfg.Ingest.Sinch.WebhookSecrets
	cfg.Processors.Forward.MessagingSecrets = cfg.Ingest.Messaging.Secrets
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// describe turns env's error into one line naming the variable. env names
// struct fields; each section is parsed alone so a field name is unambiguous
// within it (nested structs add their envPrefix).
func describe(section any, err error) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var pe env.ParseError
	if errors.As(err, &pe) {
		if key, ok := envKey(reflect.TypeOf(section).Elem(), pe.Name, Prefix); ok {
			return fmt.Errorf("%s: %w", key, pe.Err)
		}
	}
	return err
}

func envKey(t reflect.Type, field, prefix string) (string, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Name == field && f.Tag.Get("env") != "" {
			return prefix + strings.Split(f.Tag.Get("env"), ",")[0], true
		}
		if f.Type.Kind() == reflect.Struct {
			if k, ok := envKey(f.Type, field, prefix+f.Tag.Get("envPrefix")); ok {
				return k, true
			}
		}
	}
	return "", false
}

func (c *Config) validate() error {
	in := &c.Ingest
	for _, v := range []interface{ Validate() error }{c.Broker, in.Streams, in.Sinch, in.ContactPro, in.Messaging, in.OAuth, in.Throttle} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if err := c.Processors.Runtime.Validate(); err != nil {
		return err
	}
	if err := c.Processors.C4C.Validate(); err != nil {
		return err
	}
	if err := c.Processors.Summaries.Validate(); err != nil {
		return err
	}
	if err := c.Processors.Forward.Validate(); err != nil {
		return err
	}
	for _, key := range c.Processors.Forward.URLs.Keys() {
		m := in.Messaging
		_, s := m.Secrets[key]
		_, b := m.BasicUsers[key]
		_, k := m.APIKeys[key]
		if !strings.HasPrefix(key, "sinch/") && !s && !b && !k {
			return fmt.Errorf("CCRELAY_FORWARD_URLS: %q: /v1/messaging/%s takes nothing without credentials (CCRELAY_MESSAGING_SECRETS, _BASIC_USERS or _API_KEYS), so there would be nothing to forward", key, key)
		}
	}
	if skew := in.Sinch.MaxClockSkew; skew > 0 && in.Streams.DedupWindow < 2*skew {
		// A replayed Sinch callback arrives within twice the skew of the
		// original; only the dedup window makes it a duplicate.
		return fmt.Errorf("CCRELAY_DEDUP_WINDOW: %s is shorter than twice CCRELAY_SINCH_MAX_CLOCK_SKEW (%s): a replayed Sinch callback could be stored again", in.Streams.DedupWindow, 2*skew)
	}
	if skew := in.Messaging.MaxClockSkew; skew > 0 && in.Streams.DedupWindow < 2*skew {
		return fmt.Errorf("CCRELAY_DEDUP_WINDOW: %s is shorter than twice CCRELAY_MESSAGING_MAX_CLOCK_SKEW (%s): a replayed Sinch SMS callback could be stored again", in.Streams.DedupWindow, 2*skew)
	}
	if c.Processors.Runtime.LedgerTTL < in.Streams.MaxAge {
		// A replay of an event older than the ledger remembers would
		// repeat its side effect.
		return fmt.Errorf("CCRELAY_PROCESS_LEDGER_TTL: %s is shorter than CCRELAY_STREAM_MAX_AGE %s (the replay window)", c.Processors.Runtime.LedgerTTL, in.Streams.MaxAge)
	}
	if err := in.HTTP.Validate(0); err != nil {
		return err
	}
	if in.ContactPro.Auth.APIKeyHeader == "" {
		return errors.New("CCRELAY_CONTACTPRO_API_KEY_HEADER: must not be empty")
	}
	if in.Connect.Auth.APIKeyHeader == "" {
		return errors.New("CCRELAY_CONNECT_API_KEY_HEADER: must not be empty")
	}
	if host, _, err := net.SplitHostPort(c.Process.PprofAddr); err != nil || !isLoopback(host) {
		return fmt.Errorf("CCRELAY_PPROF_ADDR: %q must be a loopback host:port (127.0.0.1:6060)", c.Process.PprofAddr)
	}
	if c.Process.MetricsAddr == in.HTTP.Addr && !strings.HasSuffix(in.HTTP.Addr, ":0") {
		return fmt.Errorf("CCRELAY_METRICS_ADDR: %s is also CCRELAY_HTTP_ADDR", in.HTTP.Addr)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Variable describes one setting, for --help and the README.
type Variable struct {
	Name    string
	Default string
	// Group is the heading the setting is listed under.
	Group string
	// Help says what the setting does, in one line, from the help tag
	// beside its env tag: the one description --help and the README's
	// table print. 'Quoted' words are literal values or names (the README
	// sets them as code); a secret's help starts with "secret:".
	Help string
}

// Variables lists every setting in the order of the sections.
func Variables() []Variable {
	var cfg Config
	var out []Variable
	for _, sec := range cfg.sections() {
		params, err := env.GetFieldParamsWithOptions(sec.ptr, env.Options{Prefix: Prefix})
		if err != nil {
			// Only a programming error in the tags can get here.
			panic(err)
		}
		// env reads any tag as the default: asked for the help tag,
		// it walks the same fields in the same order and nests the
		// same prefixes, so the help needs no walk of its own.
		helps, err := env.GetFieldParamsWithOptions(sec.ptr, env.Options{Prefix: Prefix, DefaultValueTagName: "help"})
		if err != nil || len(helps) != len(params) {
			panic(fmt.Sprintf("help tags of %T: %v", sec.ptr, err))
		}
		for i, p := range params {
			if helps[i].Key != p.Key {
				panic(fmt.Sprintf("help tags of %T: %s is not %s", sec.ptr, helps[i].Key, p.Key))
			}
			out = append(out, Variable{Name: p.Key, Default: p.DefaultValue, Group: sec.group, Help: helps[i].DefaultValue})
		}
	}
	return out
}
