package signature_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ccrelay/ccrelay/messages/signature"
)

// vector is one signature test vector the Sinch SDKs publish
// (messages/testdata/sinch/signed/vectors.json names the test of each).
type vector struct {
	Body      string `json:"body"`
	Secret    string `json:"secret"`
	Nonce     string `json:"nonce"`
	Timestamp string `json:"timestamp"`
	Signature string `json:"signature"`
}

const vectorDir = "../testdata/sinch/signed"

func loadVectors(t testing.TB) ([]vector, [][]byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil || len(vs) < 3 {
		t.Fatalf("vectors: %d, %v", len(vs), err)
	}
	bodies := make([][]byte, len(vs))
	for i, v := range vs {
		if bodies[i], err = os.ReadFile(filepath.Join(vectorDir, v.Body)); err != nil {
			t.Fatal(err)
		}
	}
	return vs, bodies
}

// TestSDKVectors: the signatures Sinch's own SDKs test against verify, over
// the exact bytes (a multi-line body included), and fail with another
// secret.
func TestSDKVectors(t *testing.T) {
	vs, bodies := loadVectors(t)
	for i, v := range vs {
		if !signature.SinchVerify(v.Secret, bodies[i], v.Nonce, v.Timestamp, v.Signature) {
			t.Errorf("%s: Sinch's signature refused", v.Body)
		}
		if got := signature.SinchSign(v.Secret, bodies[i], v.Nonce, v.Timestamp); got != v.Signature {
			t.Errorf("%s: Sign = %s, want %s", v.Body, got, v.Signature)
		}
		if signature.SinchVerify("wrong_secret", bodies[i], v.Nonce, v.Timestamp, v.Signature) {
			t.Errorf("%s: accepted under another secret", v.Body)
		}
	}
}
