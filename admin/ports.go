package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"tungate/gateway"
)

// The ports API: rootlesskit's /v1/ports over HTTP on a unix socket
// ([admin] ports_api), so a container runtime that drives rootlesskit's
// port driver (rootlessctl add-ports, Docker's and nerdctl's rootless
// mode) can add and remove tungate's port forwards at run time. The shapes
// are rootlesskit's port.Spec and port.Status: GET /v1/ports lists
// [{"id":1,"spec":{"proto":"tcp","parentIP":"","parentPort":8080,
// "childIP":"10.0.2.100","childPort":80}}], POST /v1/ports with a spec
// answers 201 and the status, DELETE /v1/ports/{id} answers 200. Errors
// are {"message": "..."} with status 400 (404 for an unknown id), as
// rootlesskit's httputil writes them. The forwards are the gateway's
// runtime layer (gateway.AddForward), kept across reloads.

// PortSpec is rootlesskit's port.Spec.
type PortSpec struct {
	Proto      string `json:"proto,omitempty"`
	ParentIP   string `json:"parentIP,omitempty"`
	ParentPort int    `json:"parentPort,omitempty"`
	ChildIP    string `json:"childIP,omitempty"`
	ChildPort  int    `json:"childPort,omitempty"`
}

// PortStatus is rootlesskit's port.Status.
type PortStatus struct {
	ID   int      `json:"id"`
	Spec PortSpec `json:"spec"`
}

// PortsServer serves the ports API.
type PortsServer struct {
	srv *http.Server
	ln  net.Listener
}

// ListenPorts serves the ports API for g on a unix socket at path (mode
// 0600; like the admin socket, only root and the gateway's own user are
// answered, by SO_PEERCRED).
func ListenPorts(g *gateway.Gateway, path string) (*PortsServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin.ports_api: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin.ports_api: %s is in use", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin.ports_api: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin.ports_api: %w", err)
	}
	log := g.Logger().Named("ports-api")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		fs := g.Forwards()
		out := make([]PortStatus, 0, len(fs))
		for _, f := range fs {
			out = append(out, statusOf(f))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		var spec PortSpec
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		if err := dec.Decode(&spec); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad port spec: %w", err))
			return
		}
		f, err := g.AddForward(gateway.RuntimeForward{Proto: spec.Proto, ParentIP: spec.ParentIP,
			ParentPort: spec.ParentPort, ChildIP: spec.ChildIP, ChildPort: spec.ChildPort})
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusCreated, statusOf(f))
	})
	mux.HandleFunc("DELETE /v1/ports/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad id %q", r.PathValue("id")))
			return
		}
		if err := g.RemoveForward(id); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, gateway.ErrNoForward) {
				code = http.StatusNotFound
			}
			writeError(w, code, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"apiVersion": "1.1.1",
			"portDriver": map[string]any{"driver": "tungate", "protos": []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"},
				"disallowLoopbackChildIP": true},
		})
	})
	uid := uint32(os.Getuid())
	s := &PortsServer{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
	}}
	g.CloseWith(ln)
	go s.srv.Serve(&credListener{Listener: ln, uid: uid, log: log})
	return s, nil
}

// Addr returns the socket's path.
func (s *PortsServer) Addr() string { return s.ln.Addr().String() }

// Close stops serving and removes the socket file.
func (s *PortsServer) Close() error {
	err := s.srv.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func statusOf(f gateway.RuntimeForward) PortStatus {
	return PortStatus{ID: f.ID, Spec: PortSpec{Proto: f.Proto, ParentIP: f.ParentIP, ParentPort: f.ParentPort,
		ChildIP: f.ChildIP, ChildPort: f.ChildPort}}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"message": err.Error()})
}

// credListener answers only root and the gateway's own user: others are
// closed at accept, before a request is read.
type credListener struct {
	net.Listener
	uid uint32
	log *zap.Logger
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == 0 || uid == l.uid) {
			return c, nil
		}
		l.log.Warn("ports API: connection refused", zap.Uint32("uid", uid), zap.Error(err))
		c.Close()
	}
}
