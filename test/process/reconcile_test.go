package process_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestReconcileCommand runs 'ccrelay reconcile summaries' against a real
// NATS server and a real S3 protocol server: a dry run stores nothing, the
// run stores one trigger per call, and a second run none.
func TestReconcileCommand(t *testing.T) {
	ns := natstest.Embedded(t)
	const bucket = "amazon-connect-cli"
	s3 := s3fake.New(t, bucket)
	day := time.Now().UTC().Format("2006/01/02")
	for i := 0; i < 3; i++ {
		s3.Put(t, bucket, fmt.Sprintf("Analysis/Voice/%s/c11-%d_analysis_2026-11-23T10:00:00Z.json", day, i), []byte(`{}`))
	}
	s3.Put(t, bucket, "Analysis/Voice/Redacted/"+day+"/c11-0_analysis_redacted_2026-11-23T10:00:00Z.json", []byte(`{}`))
	env := []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_CONNECT_BUCKET=" + bucket, "CCRELAY_S3_ENDPOINT=" + s3.URL,
		"AWS_ACCESS_KEY_ID=" + s3fake.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3fake.SecretKey,
	}
	_, js := natstest.Connect(t, ns.ClientURL())
	triggers := func() uint64 {
		t.Helper()
		st, err := js.Stream(context.Background(), "CCRELAY_EVENTS")
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("ccrelay.in.connect.reconcile.>"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	code, out, errOut := runCmd(t, env, "reconcile", "summaries", "--since", "1h", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"4 analysis files of 3 calls", "3  without: would trigger"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if n := triggers(); n != 0 {
		t.Errorf("a dry run stored %d triggers", n)
	}

	code, out, errOut = runCmd(t, env, "reconcile", "summaries", "--since", "1h")
	if code != 0 || !strings.Contains(out, "3  without: triggered") {
		t.Fatalf("run: exit %d (want 0), output lacks \"3  without: triggered\"\n%s%s", code, out, errOut)
	}
	if n := triggers(); n != 3 {
		t.Errorf("%d triggers stored, want 3", n)
	}
	// No processor ran: the calls are triggered, not done, and not
	// triggered again.
	code, out, _ = runCmd(t, env, "reconcile", "summaries", "--since", "1h")
	if code != 0 || !strings.Contains(out, "3  without: triggered by an earlier sweep") {
		t.Errorf("second run: exit %d, want the 3 calls waiting\n%s", code, out)
	}
	if n := triggers(); n != 3 {
		t.Errorf("%d triggers after the second run, want still 3", n)
	}
}

// TestReconcileSurvivesSIGKILL runs the periodic sweep in a real 'ccrelay
// process', SIGKILLs it once the sweep has recorded progress, and starts
// another replica: when the dead one's lease has run out, the new one
// resumes where the sweep stopped, and every analysed call gets its
// summary, written once.
func TestReconcileSurvivesSIGKILL(t *testing.T) {
	w := newSummariesWorld(t)
	const n = 3000
	day := time.Now().UTC().Format("2006/01/02")
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		contact := fmt.Sprintf("killed-%04d", i)
		ids[i] = w.sap.AddPhoneCall(contact)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w.s3.Put(t, bucket, fmt.Sprintf("Analysis/Voice/%s/%s_analysis_x.json", day, contact), analysis(fmt.Sprintf("summary %d", i)))
		}(i)
		if i%8 == 7 {
			wg.Wait()
		}
	}
	wg.Wait()
	env := append(w.env, "CCRELAY_SUMMARIES_RECONCILE_EVERY=1s", "CCRELAY_SUMMARIES_RECONCILE_GRACE=0s", "CCRELAY_SUMMARIES_RECONCILE_LEASE=3s")
	a := start(t, t.TempDir(), env, "process", "--processors", "summaries")

	_, js := natstest.Connect(t, w.natsURL)
	ctx := context.Background()
	waitFor(t, "the sweep to record progress", func() bool {
		kv, err := js.KeyValue(ctx, "CCRELAY_RECONCILE")
		if err != nil {
			return false
		}
		_, err = kv.Get(ctx, "summaries.cursor")
		return err == nil
	})
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited

	b := start(t, t.TempDir(), env, "process", "--processors", "summaries")
	waitForCount(t, "every call written", func() int { return w.written(ids) }, n)
	w.writtenOnce(t, ids)
	if !strings.Contains(b.log(), `"resumed_after":"Analysis/Voice/`) {
		t.Errorf("the new replica did not resume the dead one's sweep:\n%s", b.log())
	}
	if err := b.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit: %v", err)
	}
}
