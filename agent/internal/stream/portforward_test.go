package stream

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream" //lint:ignore SA1019 client-go's port-forward API takes this package's Dialer
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// testNetNS creates a network namespace with its loopback up and returns
// its path; without root (or ip) the test is skipped.
func testNetNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("port-forward into a network namespace needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "skiff-h3-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	return "/run/netns/" + name
}

// echoServerIn listens on 127.0.0.1 in the namespace at netns and answers
// each line with "pod says: " and the line. It returns the port.
func echoServerIn(t *testing.T, netns string) int {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open(netns)
		if err != nil {
			res <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{nil, err}
			return
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		res <- result{ln, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	go func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "pod says: %s\n", sc.Text())
				}
			}()
		}
	}()
	return r.ln.Addr().(*net.TCPAddr).Port
}

func portForwardURL(cfg *restclient.Config, pod string) *url.URL {
	u, _ := url.Parse(cfg.Host)
	u.Path = "/portForward/default/" + pod
	return u
}

func spdyDialer(t *testing.T, cfg *restclient.Config, u *url.URL) httpstream.Dialer {
	t.Helper()
	tr, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
}

func TestPortForward(t *testing.T) {
	netns := testNetNS(t)
	podPort := echoServerIn(t, netns)
	e := startServer(t, &fakeBackend{netns: netns})
	for _, target := range []string{"direct", "through a proxy"} {
		var cfg *restclient.Config
		if target == "direct" {
			cfg = e.restConfig(t, DefaultAllowedUser)
		} else {
			cfg = e.viaProxy(t)
		}
		for _, tc := range []struct {
			name   string
			dialer func() httpstream.Dialer
		}{
			{"spdy", func() httpstream.Dialer { return spdyDialer(t, cfg, portForwardURL(cfg, "p1")) }},
			{"spdy over websocket", func() httpstream.Dialer {
				d, err := portforward.NewSPDYOverWebsocketDialer(portForwardURL(cfg, "p1"), cfg)
				if err != nil {
					t.Fatal(err)
				}
				return d
			}},
			{"kubectl fallback", func() httpstream.Dialer {
				ws, err := portforward.NewSPDYOverWebsocketDialer(portForwardURL(cfg, "p1"), cfg)
				if err != nil {
					t.Fatal(err)
				}
				return portforward.NewFallbackDialer(ws, spdyDialer(t, cfg, portForwardURL(cfg, "p1")), func(err error) bool {
					return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
				})
			}},
		} {
			t.Run(target+"/"+tc.name, func(t *testing.T) {
				stop, ready := make(chan struct{}), make(chan struct{})
				fw, err := portforward.NewOnAddresses(tc.dialer(), []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(podPort)}, stop, ready, io.Discard, io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- fw.ForwardPorts() }()
				defer func() {
					close(stop)
					<-done
				}()
				select {
				case <-ready:
				case err := <-done:
					t.Fatalf("ForwardPorts: %v", err)
				case <-time.After(20 * time.Second):
					t.Fatal("port-forward not ready")
				}
				ports, err := fw.GetPorts()
				if err != nil {
					t.Fatal(err)
				}
				// Two connections at once, each a conversation.
				var conns []net.Conn
				for range 2 {
					c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(20 * time.Second))
					conns = append(conns, c)
				}
				for round := range 2 {
					for i, c := range conns {
						msg := fmt.Sprintf("conn %d round %d", i, round)
						fmt.Fprintln(c, msg)
						got, err := bufio.NewReader(io.LimitReader(c, int64(len("pod says: "+msg+"\n")))).ReadString('\n')
						if err != nil || got != "pod says: "+msg+"\n" {
							t.Fatalf("got %q, %v; want %q", got, err, "pod says: "+msg+"\n")
						}
					}
				}
			})
		}
	}
}

// TestPortForwardErrors speaks the protocol by hand: a port nobody
// listens on, and a bad port header, are reported on the error stream.
func TestPortForwardErrors(t *testing.T) {
	netns := testNetNS(t)
	e := startServer(t, &fakeBackend{netns: netns})
	cfg := e.restConfig(t, DefaultAllowedUser)
	conn, proto, err := spdyDialer(t, cfg, portForwardURL(cfg, "p1")).Dial(pfconst.PortForwardV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if proto != pfconst.PortForwardV1Name {
		t.Fatalf("got protocol %q, want %q", proto, pfconst.PortForwardV1Name)
	}
	for i, tc := range []struct{ port, want string }{
		{"1", "error forwarding port 1 to pod default/p1: dial tcp4 127.0.0.1:1: connect: connection refused"},
		{"http", `invalid port "http"`},
	} {
		h := http.Header{}
		h.Set(corev1.StreamType, corev1.StreamTypeError)
		h.Set(corev1.PortHeader, tc.port)
		h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(i))
		errStream, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		errStream.Close()
		h.Set(corev1.StreamType, corev1.StreamTypeData)
		if _, err := conn.CreateStream(h); err != nil {
			t.Fatal(err)
		}
		msg, err := io.ReadAll(errStream)
		if err != nil || !strings.Contains(string(msg), tc.want) {
			t.Errorf("port %s: got %q, %v; want %q", tc.port, msg, err, tc.want)
		}
	}

	// A pod the backend does not know is refused before any upgrade.
	_, _, err = spdyDialer(t, cfg, portForwardURL(cfg, "missing")).Dial(pfconst.PortForwardV1Name)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing pod: got %v, want a not found error", err)
	}
}
