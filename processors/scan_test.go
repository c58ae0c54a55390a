package processors_test

import (
	"testing"

	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/toolstest"
)

// TestOperatorToolsReadThousands: dlq list, dlq requeue --all and replay
// --dry-run read thousands of events and dead letters, each once and in
// order, and leave no consumer behind (nothing for 'nats consumer report'
// to list). The same runs on a three-node cluster in
// test/e2e TestOperatorToolsOnCluster.
func TestOperatorToolsReadThousands(t *testing.T) {
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	toolstest.ReadThousands(t, js, 1, 3000, 2000)
}
