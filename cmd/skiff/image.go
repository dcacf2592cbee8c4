package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/skiff-sh/skiff/agent"
)

const imageUsage = `usage: skiff image import [--containerd-socket SOCK] FILE.tar...

Imports OCI or docker image archives (docker save, ctr export, skiff's own
image builder) into the node's containerd, where the agent runs pods from.
Pods use them with imagePullPolicy IfNotPresent or Never.
`

// runImage imports image archives (`skiff image import`).
func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprint(stderr, imageUsage)
		return 2
	}
	fs := flag.NewFlagSet("skiff image import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("containerd-socket", agent.DefaultConfig().ContainerdSocket, "containerd's socket (skiff up's: /run/skiff/containerd/containerd.sock)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, imageUsage)
		return 2
	}
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(stderr, "skiff image import: %v\n", err)
			return 1
		}
		names, err := agent.ImportImages(ctx, *socket, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "skiff image import: %s: %v\n", path, err)
			return 1
		}
		for _, n := range names {
			fmt.Fprintf(stdout, "imported %s\n", n)
		}
	}
	return 0
}
