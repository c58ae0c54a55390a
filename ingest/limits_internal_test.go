package ingest

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBufferedBytesPerAddress: a few addresses announcing large bodies
// and stalling cannot hold every buffered byte (the re-attack filled the
// 32 MiB with six addresses); each holds its share, in proportion to its
// share of the requests, and what it releases returns to it.
func TestBufferedBytesPerAddress(t *testing.T) {
	const maxBody = 512 << 10
	g := newGate(512, 32, 32<<20, maxBody, NewMetrics(prometheus.NewRegistry()))
	share := int64(32<<20) * 32 / 512 // 2 MiB
	attacker := netip.MustParsePrefix("192.0.2.1/32")
	held := int64(0)
	for held+maxBody <= share {
		if reason := g.reserve(attacker, maxBody); reason != "" {
			t.Fatalf("within its share (%d of %d bytes): %s", held, share, reason)
		}
		held += maxBody
	}
	if reason := g.reserve(attacker, maxBody); reason != shedPerAddress {
		t.Errorf("beyond its share: %q, want %q", reason, shedPerAddress)
	}
	// Sixteen such addresses are what it takes to hold the bytes; six
	// hold six shares.
	for i := 2; i <= 6; i++ {
		a := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32)
		n := int64(0)
		for g.reserve(a, maxBody) == "" {
			n += maxBody
		}
		if n != held {
			t.Errorf("address %d held %d bytes, want its share of %d", i, n, held)
		}
	}
	sender := netip.MustParsePrefix("198.51.100.7/32")
	if reason := g.reserve(sender, 4<<10); reason != "" {
		t.Errorf("a small webhook from another address while six hold their shares: %q", reason)
	}
	g.release(sender, 4<<10)
	g.release(attacker, maxBody)
	if reason := g.reserve(attacker, maxBody); reason != "" {
		t.Errorf("after releasing a body, the same address: %q", reason)
	}
	if _, ok := g.bytesByAddress[sender]; ok {
		t.Error("an address with nothing reserved is still remembered")
	}
}
