package process_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/fakes/blob"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// peakRSS is a process's resident-set high-water mark in bytes (Linux).
func peakRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestLargeAttachmentBoundedMemory moves a 25 MiB attachment from CMI into
// C4C (base64 in an OData JSON body: 33 MiB on the wire) and measures the
// processor's peak RSS. Buffering the file would cost at least the file and
// its encoding (~58 MiB) on top of the process's baseline. The binary is
// built without -race, whose shadow memory would hide the figure.
func TestLargeAttachmentBoundedMemory(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ccrelay")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ccrelay/ccrelay/cmd/ccrelay").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	const size = 25 << 20
	ns := natstest.Embedded(t)
	sap := c4cfake.New(t, "v1user", "c4c-pass")
	cmi := cmifake.New(t, "cmi-user", "cmi-pass", "cmi-key")
	cmi.AddChat(cmifake.Chat{ContactID: "big-1", Messages: []cmifake.Message{{ID: "m1", Attachments: []cmifake.File{
		{ID: "a1", Name: "scan.tiff", MimeType: "image/tiff", Seed: 42, Size: size},
	}}}})
	activity := sap.AddChatActivity("big-1")

	cmd := exec.Command(bin, "process", "--processors", "attachments")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_C4C_URL=" + sap.URL, "CCRELAY_C4C_USER=v1user", "CCRELAY_C4C_PASSWORD=c4c-pass",
		"CCRELAY_CMI_URL=" + cmi.CMIURL(), "CCRELAY_CMI_USER=cmi-user", "CCRELAY_CMI_PASSWORD=cmi-pass", "CCRELAY_CMI_API_KEY=cmi-key",
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()

	_, js := natstest.Connect(t, ns.ClientURL())
	s, _ := messages.NewSubjects("ccrelay")
	ctx := context.Background()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, binaryStreams(t)); err != nil {
		t.Fatal(err)
	}
	ev := messages.Event{Subject: s.ContactPro("chat-attachments", "ended"), ID: "chat-attachments:ended:big-1", Source: "/test", Type: "t", Time: time.Now(),
		Body: []byte(`{"contact_id":"big-1"}`)}
	waitFor(t, "processor up", func() bool { return peakRSS(t, cmd.Process.Pid) > 0 })
	if _, err := js.PublishMsg(ctx, ev.Msg()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(sap.Attachments(activity)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the attachment never arrived")
		}
		time.Sleep(50 * time.Millisecond)
	}
	a := sap.Attachments(activity)[0]
	if !expect.All(t,
		expect.Check{Name: "size", Got: a.Size, Want: size},
		expect.Check{Name: "sha256", Got: a.SHA256, Want: blob.SHA256(42, size)},
		expect.Check{Name: "name", Got: a.Name, Want: "scan.tiff"},
		expect.Check{Name: "mime type", Got: a.MimeType, Want: "image/tiff"},
	) {
		t.FailNow()
	}
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("25 MiB attachment moved; processor peak RSS %.1f MiB", float64(peak)/(1<<20))
	if peak > 64<<20 {
		t.Errorf("peak RSS %.1f MiB: the file was buffered", float64(peak)/(1<<20))
	}
}
