// Command etcd runs a single-member etcd for the local control plane: data in the given
// directory, client and peer listeners on loopback only. It exits when stdin-independent
// signals (SIGINT, SIGTERM) arrive or when the embedded server stops.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	client := flag.String("listen-client", "http://127.0.0.1:2379", "client URL, loopback")
	peer := flag.String("listen-peer", "http://127.0.0.1:2380", "peer URL, loopback")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}
	clientURL := mustLoopbackURL(*client)
	peerURL := mustLoopbackURL(*peer)

	cfg := embed.NewConfig()
	cfg.Name = "tidescale-test"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.LogLevel = "warn"
	// NewConfig leaves these at zero (only the command-line flags default them), which makes
	// every request "expensive" and logged; use the etcd command's defaults.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.WarningApplyDuration = embed.DefaultWarningApplyDuration
	// The test data is thrown away with the directory: no point in syncing every write.
	cfg.UnsafeNoFsync = true

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("starting etcd: %v", err)
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
		log.Printf("etcd ready on %s", clientURL.String())
	case <-time.After(60 * time.Second):
		server.Server.Stop()
		log.Fatal("etcd did not become ready within 60 s")
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-server.Err():
		log.Fatalf("etcd stopped: %v", err)
	case sig := <-signals:
		log.Printf("etcd stopping on %s", sig)
	}
}

// mustLoopbackURL parses a listener URL and refuses any host that is not a loopback
// address: the control plane must never listen on a real interface.
func mustLoopbackURL(raw string) url.URL {
	parsed, err := url.Parse(raw)
	if err != nil {
		log.Fatalf("bad URL %q: %v", raw, err)
	}
	host := parsed.Hostname()
	if host != "127.0.0.1" && host != "::1" && !isLoopback127(host) {
		log.Fatalf("refusing non-loopback listener %q", raw)
	}
	return *parsed
}

func isLoopback127(host string) bool {
	return len(host) > 4 && host[:4] == "127."
}
