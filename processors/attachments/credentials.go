package attachments

import (
	"fmt"
	"strings"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
)

// credentials are where and as whom one Contact Pro call is served.
type credentials struct {
	cmi    cmiSession
	tenant c4c.Tenant
	// trustedCMI is true when CMI is the configured one: only then do its
	// answers decide which staged media belongs to the chat.
	trustedCMI bool
}

// credentials binds the call's URLs to credentials. Credentials travel as
// a unit with their origin: the call's own (sealed into the event) go with
// the call's URLs or the configured ones; the configured ones go only to
// the configured URLs. A call naming a URL elsewhere without its own
// credentials, or a host off the allow-list, is refused permanently.
func (p *Processor) credentials(call *messages.ChatAttachmentsCall, fields map[string]string) (credentials, error) {
	cfg := p.cfg.CMI
	own := fields["x-cmi-password"] != "" || fields["x-cmi-api-key"] != ""
	b, err := p.cmiOrigin.Bind(call.CMIURL, own)
	if err != nil {
		return credentials{}, processors.Permanent(fmt.Errorf("cmi: %w", err))
	}
	cmi := cmiSession{cfg: cfg, http: p.cmi, base: strings.TrimRight(b.URL.String(), "/"),
		user: cfg.User, password: cfg.Password.Reveal(), apiKey: cfg.APIKey.Reveal()}
	if own {
		cmi.user, cmi.password, cmi.apiKey = call.CMIUser, fields["x-cmi-password"], fields["x-cmi-api-key"]
	}
	tenant, err := p.c4c.Config().TenantFor(p.c4cOrigin, call.SAP.URL, call.SAP.User, secret.Secret(fields["x-sap-v1-password"]))
	if err != nil {
		return credentials{}, processors.Permanent(fmt.Errorf("c4c: %w", err))
	}
	return credentials{cmi: cmi, tenant: tenant, trustedCMI: b.Configured}, nil
}

// openSealed opens the credentials sealed into the event, bound to its
// dedup id and the digest of its whole body: a sealed header copied onto
// another event, or any edit of the body under the same ce-id (another
// chat, another host), does not open, and the event is dead-lettered.
// Retrying cannot open it, and neither can a requeue.
func (p *Processor) openSealed(ev *processors.Event) (map[string]string, error) {
	sealed := ev.Header.Get(messages.HeaderSealed)
	if sealed == "" {
		return nil, nil
	}
	fields, err := p.keys.Open(sealed, messages.CredentialContext(ev.ID, ev.Body))
	if err != nil {
		p.files.WithLabelValues("transfer", "refused").Inc()
		return nil, processors.Permanent(fmt.Errorf("open sealed credentials (sealed for another event, the body was changed, "+
			"or sealed by a release before credentials were bound to the whole body: Contact Pro must send the call again): %w", err))
	}
	return fields, nil
}
