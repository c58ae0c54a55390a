package natstest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// ClusterNode is one server of a Cluster.
type ClusterNode struct {
	Name      string
	Container *testcontainers.DockerContainer
}

// Cluster is a JetStream cluster of containers on a Docker network of its
// own. Clients reach it only through the ports published on loopback.
type Cluster struct {
	Nodes []*ClusterNode
}

// NewCluster starts n JetStream servers clustered on their own network.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if _, err := imageReady(t); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatalf("cluster network: %v", err)
	}
	t.Cleanup(func() { _ = nw.Remove(context.Background()) })
	var routes []string
	for i := 1; i <= n; i++ {
		routes = append(routes, fmt.Sprintf("nats://nats-%d:6222", i))
	}
	c := &Cluster{}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("nats-%d", i)
		ctr, err := testcontainers.Run(ctx, imageName(),
			network.WithNetwork([]string{name}, nw),
			// --no_advertise: clients reach the nodes only through the
			// ports published on loopback, never the containers' addresses.
			testcontainers.WithCmd("-js", "-sd", "/data", "--name", name, "--cluster_name", "ccrelay",
				"--cluster", "nats://0.0.0.0:6222", "--routes", strings.Join(routes, ","), "--no_advertise"),
			testcontainers.WithExposedPorts("4222/tcp"),
			testcontainers.WithWaitStrategy(wait.ForListeningPort("4222/tcp").WithStartupTimeout(60*time.Second)),
		)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = ctr.Terminate(ctx)
		})
		c.Nodes = append(c.Nodes, &ClusterNode{Name: name, Container: ctr})
	}
	c.WaitReady(t)
	return c
}

// WaitReady waits until the cluster has a JetStream meta leader: servers
// listen well before they have elected one, and until then every
// JetStream request times out.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	_, js := Connect(t, c.URLs(t))
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster has no JetStream leader: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// URL is the client URL of one node, on loopback.
func (n *ClusterNode) URL(t testing.TB) string {
	t.Helper()
	ep, err := n.Container.PortEndpoint(context.Background(), "4222/tcp", "nats")
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// URLs is the comma-separated client URLs of the running nodes.
func (c *Cluster) URLs(t testing.TB) string {
	var urls []string
	for _, n := range c.Nodes {
		if st, err := n.Container.State(context.Background()); err == nil && st.Running {
			urls = append(urls, n.URL(t))
		}
	}
	return strings.Join(urls, ",")
}

// Stop stops a node, as a crash or a rolling restart would.
func (n *ClusterNode) Stop(t testing.TB) {
	t.Helper()
	d := 5 * time.Second
	if err := n.Container.Stop(context.Background(), &d); err != nil {
		t.Fatalf("stop %s: %v", n.Name, err)
	}
}

// Kill stops a node at once (SIGKILL), as a crash or a power loss would:
// unlike Stop, whose SIGTERM makes the server hand its leaderships over
// before it exits, it leaves the node's streams without a leader until
// the others elect one.
func (n *ClusterNode) Kill(t testing.TB) {
	t.Helper()
	out, err := exec.Command("docker", "kill", n.Container.GetContainerID()).CombinedOutput() // #nosec G204 -- fixed program, the test's own container
	if err != nil {
		t.Fatalf("kill %s: %v: %s", n.Name, err, out)
	}
}

// Pause freezes a node (docker pause): its connections stay open and
// nothing answers on them, as with a node that hangs, a VM frozen or a
// network that drops packets. Unpause ends it.
func (n *ClusterNode) Pause(t testing.TB) { n.docker(t, "pause") }

// Unpause lets a paused node run again.
func (n *ClusterNode) Unpause(t testing.TB) { n.docker(t, "unpause") }

func (n *ClusterNode) docker(t testing.TB, verb string) {
	t.Helper()
	out, err := exec.Command("docker", verb, n.Container.GetContainerID()).CombinedOutput() // #nosec G204 -- fixed program and verbs, the test's own container
	if err != nil {
		t.Fatalf("%s %s: %v: %s", verb, n.Name, err, out)
	}
}

// Leader is the node leading stream (a KV bucket's is "KV_<bucket>"). It
// asks for up to 30 s: right after a node is lost the answer may take an
// election.
func (c *Cluster) Leader(t testing.TB, js jetstream.JetStream, stream string) *ClusterNode {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var leader string
		st, err := js.Stream(ctx, stream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = st.Info(ctx); err == nil && info.Cluster != nil {
				leader = info.Cluster.Leader
			}
		}
		cancel()
		for _, n := range c.Nodes {
			if leader != "" && n.Name == leader {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: no leader among the nodes (%q): %v", stream, leader, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// MakeLeader moves the leadership of stream to node n (a leader step-down
// with n preferred), and waits until n leads.
func (c *Cluster) MakeLeader(t testing.TB, nc *nats.Conn, js jetstream.JetStream, stream string, n *ClusterNode) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for c.Leader(t, js, stream) != n {
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: %s did not become its leader", stream, n.Name)
		}
		body := fmt.Appendf(nil, `{"placement":{"preferred":%q}}`, n.Name)
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, body, 5*time.Second); err != nil {
			t.Logf("step-down of %s: %v", stream, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Named is the node called name (as NATS reports it, e.g.
// nats.Conn.ConnectedServerName).
func (c *Cluster) Named(t testing.TB, name string) *ClusterNode {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %q", name)
	return nil
}

// Start starts a stopped node again, keeping its data.
func (n *ClusterNode) Start(t testing.TB) {
	t.Helper()
	if err := n.Container.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", n.Name, err)
	}
}
