package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// runMembers lists the members (`skiff members`) or removes one
// (`skiff members remove ID`).
func runMembers(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	remove := len(args) > 0 && args[0] == "remove"
	if remove {
		args = args[1:]
	}
	fs := flag.NewFlagSet("skiff members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: skiff members [--peer ADDR]\n       skiff members remove [--peer ADDR] NODE-ID\n")
		fs.PrintDefaults()
	}
	var pf peerClientFlags
	pf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if remove != (fs.NArg() == 1) || fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	cl, err := pf.client()
	if err != nil {
		fmt.Fprintf(stderr, "skiff members: %v\n", err)
		return 1
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if remove {
		if err := cl.Remove(ctx, fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "skiff members remove: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "removed %s\n", fs.Arg(0))
		return 0
	}
	st, err := cl.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "skiff members: %s: %v\n", pf.peers, err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tVOTER\tLEADER")
	for _, s := range st.Servers {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\n", s.ID, s.Address, s.Voter, s.ID == st.LeaderID)
	}
	tw.Flush()
	return 0
}
