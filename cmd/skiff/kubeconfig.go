package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/controlplane/master"
)

// runKubeconfig prints a kubeconfig with a new client certificate of the
// cluster CA kept in a master's data directory, or, with --token, one that
// authenticates with that bearer token.
func runKubeconfig(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("skiff kubeconfig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "/var/lib/skiff", "data directory of a master of the cluster")
	server := fs.String("server", "https://127.0.0.1:6443", "URL of the Kubernetes API to put in the kubeconfig")
	user := fs.String("user", master.AdminUser, "user name (the certificate's common name)")
	groups := fs.String("groups", master.AdminGroup, "comma-separated groups (the certificate's organizations)")
	validity := fs.Duration("validity", 365*24*time.Hour, "how long the certificate is valid")
	token := fs.String("token", "", "a bearer token from 'skiff token create' to authenticate with instead of a certificate (--user then only names the kubeconfig's user entry); --token-file keeps it out of the process list")
	tokenFile := fs.String("token-file", "", "a file holding the bearer token (its first line), instead of --token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tokenFile != "" {
		if *token != "" {
			fmt.Fprintln(stderr, "skiff kubeconfig: --token and --token-file do not go together")
			return 2
		}
		t, err := readToken(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "skiff kubeconfig: %v\n", err)
			return 1
		}
		*token = t
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "skiff kubeconfig: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *token != "" || *tokenFile != "" {
		var bad []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "groups" || f.Name == "validity" {
				bad = append(bad, "--"+f.Name)
			}
		})
		if len(bad) > 0 {
			fmt.Fprintf(stderr, "skiff kubeconfig: %s do not go with --token: the token's record holds its groups and expiry\n", strings.Join(bad, " and "))
			return 2
		}
	}
	ca, err := master.LoadCA(*dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "skiff kubeconfig: %v\n", err)
		return 1
	}
	if *token != "" {
		kc, err := master.TokenKubeconfig(*server, ca.CertPEM(), *user, *token)
		if err != nil {
			fmt.Fprintf(stderr, "skiff kubeconfig: %v\n", err)
			return 1
		}
		stdout.Write(kc)
		return 0
	}
	var gs []string
	for _, g := range strings.Split(*groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			gs = append(gs, g)
		}
	}
	kc, err := master.Kubeconfig(ca, *server, *user, gs, *validity)
	if err != nil {
		fmt.Fprintf(stderr, "skiff kubeconfig: %v\n", err)
		return 1
	}
	stdout.Write(kc)
	return 0
}

// readToken returns the first line of path, trimmed: a token file as
// `skiff token create > FILE` writes it.
func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("token file %s: empty", path)
	}
	return line, nil
}
