package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiff-sh/skiff/controlplane/master"
	"github.com/skiff-sh/skiff/raftstore"
)

const tokenUsage = `usage: skiff token create [--peer ADDR] [--user U] [--groups G1,G2] [--ttl 24h] [--description TEXT]
       skiff token create --join [--peer ADDR] [--ttl 24h] [--description TEXT]
       skiff token list [--peer ADDR]
       skiff token delete [--peer ADDR] ID...

Bearer tokens for the Kubernetes API ("kubectl --token", or a kubeconfig from
"skiff kubeconfig --token"). The cluster keeps only a hash of each token:
create prints the token once. The verbs reach the cluster's store through a
master's peer address; every master honours a new or deleted token as soon as
its replica has the change.

With --join, create prints a join token instead, for "skiff agent --join
ADDR --token TOKEN": SKIFF1.<ca-sha256>.<gossip-key>.<bearer-token>, the hash
of the cluster CA (the agent verifies the masters against it), the gossip
pool's key and a bearer token of a user system:bootstrap:<id> in the group
system:bootstrappers:skiff, which may only ask the masters to sign a new
node's certificates. Keep it secret: it lets a machine join the cluster.
`

// runToken creates, lists or deletes bearer tokens.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, tokenUsage)
			return 0
		}
		fmt.Fprint(stderr, tokenUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("skiff token "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, tokenUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	var pf peerClientFlags
	pf.register(fs)
	var spec master.TokenSpec
	var groups string
	var join bool
	switch verb {
	case "create":
		fs.BoolVar(&join, "join", false, "create a join token for a worker (skiff agent --token)")
		fs.StringVar(&spec.User, "user", master.AdminUser, "user name the token authenticates as")
		fs.StringVar(&groups, "groups", master.AdminGroup, "comma-separated groups of the user")
		fs.DurationVar(&spec.TTL, "ttl", 24*time.Hour, "how long the token is valid; 0 for a token that never expires")
		fs.StringVar(&spec.Description, "description", "", "free text shown by 'skiff token list'")
	case "list", "delete":
	default:
		fmt.Fprintf(stderr, "skiff token: unknown verb %q\n\n%s", verb, tokenUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if (verb == "delete") != (fs.NArg() > 0) {
		fs.Usage()
		return 2
	}
	if join {
		var bad []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "user" || f.Name == "groups" {
				bad = append(bad, "--"+f.Name)
			}
		})
		if len(bad) > 0 {
			fmt.Fprintf(stderr, "skiff token create: --join makes a token of a bootstrap user: %s cannot be set\n", strings.Join(bad, " and "))
			return 2
		}
	}
	cl, err := pf.client()
	if err != nil {
		fmt.Fprintf(stderr, "skiff token %s: %v\n", verb, err)
		return 1
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()

	switch {
	case verb == "create" && join:
		token, rec, err := master.CreateJoinToken(ctx, cl, spec.TTL, spec.Description)
		if err != nil {
			return createFailed(stderr, err)
		}
		fmt.Fprintln(stdout, token)
		where := "<a master's gossip address, host:7946>"
		if addrs, err := master.GossipAddrs(ctx, cl); err == nil && len(addrs) > 0 {
			where = strings.Join(addrs, "|")
		}
		fmt.Fprintf(stderr, "Created join token %s for user %q; expires: %s.\nOn a new worker: skiff agent --join %s --token <the token above>\n",
			rec.ID, rec.User, expiry(rec, time.Now()), where)
		return 0

	case verb == "create":
		for _, g := range strings.Split(groups, ",") {
			if g = strings.TrimSpace(g); g != "" {
				spec.Groups = append(spec.Groups, g)
			}
		}
		token, rec, err := master.CreateToken(ctx, cl, spec)
		if err != nil {
			return createFailed(stderr, err)
		}
		fmt.Fprintln(stdout, token)
		fmt.Fprintf(stderr, "Created token %s for user %q in groups [%s]; expires: %s.\nThe cluster keeps only its hash: the token above is shown this once.\n",
			rec.ID, rec.User, strings.Join(rec.Groups, ","), expiry(rec, time.Now()))
		return 0

	case verb == "list":
		toks, err := master.ListTokens(ctx, cl)
		if len(toks) > 0 || err == nil {
			now := time.Now()
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tGROUPS\tCREATED\tEXPIRES\tDESCRIPTION")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.User, strings.Join(t.Groups, ","), t.Created.Format(time.RFC3339), expiry(t, now), t.Description)
			}
			tw.Flush()
		}
		if err != nil {
			fmt.Fprintf(stderr, "skiff token list: %v\n", err)
			return 1
		}
		return 0

	default: // delete
		code := 0
		for _, id := range fs.Args() {
			if err := master.DeleteToken(ctx, cl, id); err != nil {
				fmt.Fprintf(stderr, "skiff token delete: %v\n", err)
				code = 1
				continue
			}
			fmt.Fprintf(stdout, "deleted token %s\n", id)
		}
		return code
	}
}

// expiry describes when t expires, as seen at now.
func expiry(t master.Token, now time.Time) string {
	switch {
	case t.Expires.IsZero():
		return "never"
	case t.Expired(now):
		return t.Expires.Format(time.RFC3339) + " (expired)"
	}
	return t.Expires.Format(time.RFC3339)
}

// createFailed reports a failed token create; exit code 1.
func createFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "skiff token create: %v\n", err)
	if errors.Is(err, raftstore.ErrUnknownOutcome) {
		fmt.Fprintln(stderr, "the token may have been stored: check with 'skiff token list' and delete it if so")
	}
	return 1
}
