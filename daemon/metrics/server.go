// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server.
type Options struct {
	Version string // for net_tc_filter_build_info
	Logger  *slog.Logger
}

// Server serves /metrics on any number of listeners: those systemd hands
// over (Serve) and the one configured address (Listen), which a reload
// may move. Everything it serves stops when the context given to
// NewServer ends.
type Server struct {
	ctx     context.Context
	log     *slog.Logger
	handler http.Handler

	mu      sync.Mutex
	addr    string // the configured address being served; "" none
	stopCfg func() // stops serving it
}

// NewServer makes a server of src's metrics with its own registry (the
// daemon's collector, Go runtime and process collectors), living until ctx
// ends.
func NewServer(ctx context.Context, src Source, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		NewCollector(src, opts.Version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics collector: %w", err)
		}
	}
	return &Server{ctx: ctx, log: opts.Logger, handler: Handler(reg, opts.Logger)}, nil
}

// Handler serves reg on /metrics and 404 everywhere else.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogErrorLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.Handle("/", http.NotFoundHandler())
	return mux
}

// slogErrorLog takes promhttp's errors (a collector that failed) to the
// daemon's log.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// Serve serves ln until the server's context ends, then closes it. It
// returns at once; a listener that fails is logged.
func (s *Server) Serve(ln net.Listener) {
	s.serve(s.ctx, ln)
}

func (s *Server) serve(ctx context.Context, ln net.Listener) (stop func()) {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics: serving stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		// A scrape under way gets a moment to finish.
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		hs.Shutdown(sctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Listen serves the configured address (metrics.listen): it binds addr,
// serves it and stops serving the previous one. The same address again
// changes nothing; "" stops serving the configured address. When addr
// cannot be bound, the previous address stays served and the error says
// why.
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr == s.addr {
		return nil
	}
	if addr == "" {
		s.stopConfigured()
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(s.ctx, "tcp", addr)
	if err != nil && isAddrInUse(err) && samePort(addr, s.addr) {
		// Moving between addresses that overlap (127.0.0.1:9963 and
		// 0.0.0.0:9963): the old one must go first, and comes back
		// when the new one cannot be had after all.
		old := s.addr
		s.stopConfigured()
		if ln, err = lc.Listen(s.ctx, "tcp", addr); err != nil {
			if back, berr := lc.Listen(s.ctx, "tcp", old); berr == nil {
				s.addr, s.stopCfg = old, s.serve(s.ctx, back)
			}
		}
	}
	if errors.Is(err, syscall.EAFNOSUPPORT) {
		return fmt.Errorf("metrics: listen on %s: %w (Internet sockets are forbidden to this process, e.g. by the systemd unit's RestrictAddressFamilies=: use net-tc-filter-metrics.socket, or see metrics.listen in net-tc-filter.yml(5))", addr, err)
	}
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	s.stopConfigured()
	s.addr, s.stopCfg = addr, s.serve(s.ctx, ln)
	s.log.Info("metrics: serving http://" + ln.Addr().String() + "/metrics")
	return nil
}

// Addr is the configured address being served, "" when none.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) stopConfigured() {
	if s.stopCfg != nil {
		s.stopCfg()
		s.log.Info("metrics: no longer serving " + s.addr)
	}
	s.addr, s.stopCfg = "", nil
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

func samePort(a, b string) bool {
	_, pa, erra := net.SplitHostPort(a)
	_, pb, errb := net.SplitHostPort(b)
	return erra == nil && errb == nil && pa == pb
}
