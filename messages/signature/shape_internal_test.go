package signature

import (
	"encoding/base64"
	"testing"
)

// FuzzStrictLen holds the allocation-free check to the strict decoder it
// stands for, at the sizes of the schemes' MACs (SHA-1 and SHA-256).
func FuzzStrictLen(f *testing.F) {
	f.Add(SinchSign("s", []byte("{}"), "n", "1"))
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=")
	f.Add("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
	f.Add("RSOYDt4T1cUTdK1PDd93/VVr8B9=")
	strict := base64.StdEncoding.Strict()
	f.Fuzz(func(t *testing.T, s string) {
		b, err := strict.DecodeString(s)
		for _, n := range []int{20, 32} {
			if got, want := strictLen(s, n), err == nil && len(b) == n; got != want {
				t.Fatalf("strictLen(%q, %d) = %v, strict decoding says %v", s, n, got, want)
			}
		}
	})
}
