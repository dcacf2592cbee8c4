// Command skiff is Skiff's one binary: masters (`server`), the single-node
// cluster (`up`) and admin verbs (`members`, `token`, `kubeconfig`). It parses flags into the
// components' Config structs and wires them together; the work is done in
// the packages it imports.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/skiff-sh/skiff/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: skiff <command> [flags]

commands:
  server      run a master: the replicated store, the Kubernetes API and a status endpoint
  up          run a single-node cluster on this machine (a master and an agent)
  agent       run a worker: join the cluster and run its pods through containerd
  members     show the cluster's members as one master sees them (or remove one)
  token       create, list and delete bearer tokens for the Kubernetes API
  kubeconfig  print a kubeconfig with a new client certificate of the cluster CA (or a bearer token)
  image       import an OCI or docker image archive into a node's containerd
  hollow      run hollow nodes (register, heartbeat and run pods without containers) for scale tests

Run 'skiff <command> -h' for a command's flags.
`

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "server":
		return runServer(ctx, args[1:], stdout, stderr, false)
	case "up":
		return runServer(ctx, args[1:], stdout, stderr, true)
	case "agent":
		return runAgent(ctx, args[1:], stdout, stderr)
	case "log-driver":
		// Run by containerd's shim for every container: not for people.
		return agent.LogDriverMain(args[1:])
	case "image":
		return runImage(ctx, args[1:], stdout, stderr)
	case "members":
		return runMembers(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "kubeconfig":
		return runKubeconfig(ctx, args[1:], stdout, stderr)
	case "hollow":
		return runHollow(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "skiff: unknown command %q\n\n%s", args[0], usage)
	return 2
}
