package gateway

import (
	"go.uber.org/zap"

	"tungate/alg"
	"tungate/conntrack"
	"tungate/nat"
	"tungate/rules"
)

// CheckRules builds everything a config compiles into (NAT, helpers, rules)
// without opening a device, so `tungate check` finds every error `run`
// would.
func CheckRules(cfg *Config) error {
	ct, err := conntrack.NewTable(conntrack.Config{Max: 1024})
	if err != nil {
		return err
	}
	if _, err := nat.New(cfg.NAT, cfg.natIfaces(), ct, zap.NewNop()); err != nil {
		return err
	}
	m, err := alg.New(cfg.Helpers, ct, nil, zap.NewNop())
	if err != nil {
		return err
	}
	_, err = rules.Compile(cfg.Filter, cfg.Raw, cfg.Sets, rules.Env{
		Interfaces: cfg.InterfaceNames(),
		Helpers:    m.Names(),
		Logger:     zap.NewNop(),
	})
	return err
}
