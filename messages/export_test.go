package messages

// ScanSinchRoute exposes the one-pass reader behind RouteSinchCallback, so
// tests can tell which callbacks take it.
var ScanSinchRoute = scanSinchRoute
