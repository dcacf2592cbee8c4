// Command lab brings Skiff's multi-host lab up and down (`make lab`,
// `make lab-down`): `lab up` builds the lab in a directory, leaves its
// processes running in the background and prints how to use it; `lab down`
// removes everything recorded in the directory, also after a crash.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/skiff-sh/skiff/e2e/lab"
)

const usage = `usage: lab up [--masters N] [--workers M] [--dir DIR] [--skiff BIN] [--agents]
       lab down [--dir DIR]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".lab", "the lab's directory (state, logs, data)")
	switch args[0] {
	case "up":
		cfg := lab.DefaultConfig()
		fs.IntVar(&cfg.Masters, "masters", 1, "number of masters")
		fs.IntVar(&cfg.Workers, "workers", 2, "number of workers")
		fs.StringVar(&cfg.SkiffBin, "skiff", "bin/skiff", "the skiff binary to run")
		fs.BoolVar(&cfg.StartAgents, "agents", false, "start the workers' agents (skiff agent --join ...)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		bin, err := filepath.Abs(cfg.SkiffBin)
		if err != nil {
			fmt.Fprintf(stderr, "lab up: %v\n", err)
			return 1
		}
		cfg.SkiffBin, cfg.Dir, cfg.Detach = bin, *dir, true
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		l, err := lab.Up(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "lab up: %v\n", err)
			if errors.Is(err, lab.ErrExists) {
				fmt.Fprintln(stderr, "run `make lab-down` first")
			}
			return 1
		}
		printUsage(stdout, l)
		return 0
	case "down":
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if err := lab.Cleanup(*dir); err != nil {
			fmt.Fprintf(stderr, "lab down: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "lab in %s removed\n", *dir)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

func printUsage(w io.Writer, l *lab.Lab) {
	fmt.Fprintf(w, "\nSkiff lab %s is up in %s (subnet %s, bridge %s).\n\n", l.ID(), l.Dir(), l.Subnet(), l.Bridge())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLE\tIP\tNETNS")
	for _, h := range append(l.Masters(), l.Workers()...) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name, h.Role, h.IP, h.NetNS)
	}
	tw.Flush()
	if kc := l.Kubeconfig(); kc != "" {
		fmt.Fprintf(w, "\nKubernetes API: https://%s\n\n  export KUBECONFIG=%s\n  kubectl get nodes\n", l.Master(0).APIAddr, kc)
	}
	imgs := l.Images()
	fmt.Fprintf(w, "\nRegistry: http://%s (plain http)\n  images: %s\n          %s\n", l.Registry(), imgs.Busybox, imgs.Echo)
	if len(l.Workers()) > 0 {
		w0 := l.Worker(0)
		fmt.Fprintf(w, "\nRun a command on a host:  nsenter --net=%s -- ip addr\nits containerd:           ctr -a %s version\n", w0.NetNSPath, w0.ContainerdSocket)
	}
	fmt.Fprintf(w, "Logs: %s\n\nRemove everything: make lab-down\n", filepath.Dir(l.LogPath("x")))
}
