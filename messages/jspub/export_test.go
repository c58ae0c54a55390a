package jspub

// ScanAck is the one-pass reading alone, so tests can tell which acks take
// it.
var ScanAck = scanAck
