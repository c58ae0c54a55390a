// Package blob makes deterministic pseudo-random file contents of any size
// as a stream, so tests can move large files without holding them, and
// check them by digest.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
)

// Reader returns size bytes generated from seed.
func Reader(seed uint64, size int64) io.Reader {
	var key [32]byte
	for i := 0; i < 8; i++ {
		key[i] = byte(seed >> (8 * i)) // #nosec G115 -- byte i of the seed, truncation meant
	}
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// Bytes returns the content of Reader(seed, size) in memory.
func Bytes(seed uint64, size int64) []byte {
	b, _ := io.ReadAll(Reader(seed, size))
	return b
}

// SHA256 is the hex digest of Reader(seed, size).
func SHA256(seed uint64, size int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, Reader(seed, size))
	return hex.EncodeToString(h.Sum(nil))
}
