#!/bin/sh
# Kubo runs this once after `ipfs init`: a private swarm that never dials the public IPFS network.
set -e
ipfs bootstrap rm --all
ipfs config --json Discovery.MDNS.Enabled false
ipfs config --json Swarm.RelayClient.Enabled false
ipfs config --json Swarm.RelayService.Enabled false
ipfs config Routing.Type none
ipfs config --json AutoConf.Enabled false 2>/dev/null || true
ipfs config Addresses.API /ip4/0.0.0.0/tcp/5001
