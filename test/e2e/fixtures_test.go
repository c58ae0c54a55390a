package e2e_test

import (
	"fmt"
	"time"

	"github.com/ccrelay/ccrelay/test/sinchtest"
)

const appID = sinchtest.AppID

func inboundText(msgID string, at time.Time) []byte { return sinchtest.InboundText(msgID, at) }

func inboundMedia(msgID string) []byte {
	return fmt.Appendf(nil, `{"app_id":%q,"project_id":"p","event_time":"2026-11-21T10:00:00Z","message":{"id":%q,"direction":"TO_APP",
"contact_message":{"media_message":{"url":"https://media.example.test/f/receipt.pdf","filename_override":"receipt.pdf"}},
"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":%q}}}`, appID, msgID, appID)
}

func deliveryReport(msgID, status string) []byte {
	return fmt.Appendf(nil, `{"app_id":%q,"accepted_time":"2026-11-21T10:00:00.598Z","event_time":"2026-11-21T10:00:09.892757478Z",
"project_id":"c36f3d3d-1513-4edd-ae42-11995557ff61","message_delivery_report":{"message_id":%q,"conversation_id":"01FNV9VKCVZ6S6FVGKF62QBZ75",
"status":%q,"channel_identity":{"channel":"SINCH_CHAT","identity":"46702571492","app_id":%q},"contact_id":"01FNV9VKCVZ6S6FVGKF62QBZ76",
"reason":{"code":"RECIPIENT_NOT_REACHABLE","description":"unreachable","sub_code":"UNSPECIFIED_SUB_CODE"},"metadata":"","processing_mode":"DISPATCH"}}`,
		appID, msgID, status, appID)
}

func chatAttachments(contactID string) []byte {
	return fmt.Appendf(nil, `{"cmi_url":"https://cmi.example.test/acme/cmi","cmi_user":"transcript.user",
"sap_v1":{"url":"https://my2554607.de1.crm.cloud.sap","user":"v1user"},"contact_id":%q}`, contactID)
}

const instanceID = "b1e4f6a2-3c5d-4e7f-8a9b-0c1d2e3f4a5b"

func contactLens(eventID, contactID, detailType string) []byte {
	return fmt.Appendf(nil, `{"version":"0","id":%q,"detail-type":%q,"source":"aws.connect","account":"123456789012",
"time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":["arn:aws:connect:eu-central-1:123456789012:instance/%s/contact/%s"],
"detail":{"version":"1.0","ruleName":"SAPPostCallAnalytics","actionName":"SAPPostCallAnalytics",
"instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s",
"contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s/contact/%s",
"agentArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s/agent/a1","queueArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s/queue/q1"}}`,
		eventID, detailType, instanceID, contactID, instanceID, instanceID, contactID, instanceID, instanceID)
}
