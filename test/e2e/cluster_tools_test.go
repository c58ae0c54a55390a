package e2e_test

import (
	"testing"

	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/toolstest"
)

// TestOperatorToolsOnCluster: on a fresh three-node cluster with R3
// streams, replay --dry-run and dlq list read thousands of events and dead
// letters three times each, and dlq requeue moves a thousand back, without
// stopping on the "no responders" of a consumer just created on another
// node (each stopped at event 7 to 32 when they read through an ordered
// consumer's Next), and without leaving consumers behind.
func TestOperatorToolsOnCluster(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	_, js := natstest.Connect(t, cluster.URLs(t))
	toolstest.ReadThousands(t, js, 3, 3000, 2000)
}
