package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/skiff-sh/skiff/raftstore"
)

func runMembers(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("skiff members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	peer := fs.String("peer", "127.0.0.1:6444", "peer address of a master to ask")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cl, err := raftstore.NewClient(raftstore.ClientConfig{Endpoints: []string{*peer}})
	if err != nil {
		fmt.Fprintf(stderr, "skiff members: %v\n", err)
		return 1
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := cl.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "skiff members: %s: %v\n", *peer, err)
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
