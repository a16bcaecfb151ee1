// Package e2e runs the tungate binary end to end: it builds cmd/tungate,
// starts it on real kernel TUN devices, moves those devices into a client
// and a server network namespace, and drives real programs (curl, ping,
// python3's HTTP server, vsftpd) through it. The container tests run
// rootless podman and rootlesskit as a user made for the test, with
// tungate attached to their namespaces as the containers' network.
//
// The tests need root and `ip netns`; without them they skip and say why.
// Every namespace and device name carries this process's id, so two runs
// side by side do not collide, and every test removes what it created even
// when it fails. TUNGATE_BIN runs a prebuilt gateway instead of building
// one; a race-instrumented test run (go test -race) builds a
// race-instrumented gateway and fails on any race it reports.
package e2e
