package messages

// ScanSinchRoute exposes the one-pass reader behind RouteSinchCallback, so
// tests can tell which callbacks take it.
var ScanSinchRoute = scanSinchRoute

// ScanSinchDelivery reports whether DecodeSinchDelivery reads body in its
// one pass.
func ScanSinchDelivery(body []byte) bool {
	c, ok := scanSinchCallback(body)
	return ok && c.trigger == TriggerMessageDelivery
}

// ScanReason exposes the one-pass reader of a delivery report's reason.
var ScanReason = scanReason
