// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "./interfaces/IMeshLedger.sol";
import {Bits} from "./libraries/Bits.sol";
import {Consensus} from "./libraries/Consensus.sol";
import {Account, Config, Entry, LedgerStore, Live, Position} from "./libraries/LedgerStore.sol";

/// @title RoundSettlement
/// @notice The end of a round (protocol v2, docs/protocol.md R4–R6): the consensus of every update from the
/// revealed scores, the accepted set, every settlement, and the opening of the next round with a freshly frozen
/// validator set. An EXTERNAL library: MeshLedger calls it by DELEGATECALL on its own storage (`LedgerStore`), so
/// its events are the ledger's events. It exists to keep MeshLedger under the 24,576-byte limit (EIP-170): a
/// deployment deploys it first and links its address into MeshLedger's bytecode (ledger/chain/deploy.py).
library RoundSettlement {
    using Bits for uint256;

    uint16 internal constant REPUTATION_MIN = 100;
    uint16 internal constant REPUTATION_MAX = 10_000;
    uint256 internal constant CONTRIBUTOR_GAIN = 500;
    uint256 internal constant CONTRIBUTOR_LOSS = 1_500;
    uint256 internal constant VALIDATOR_GAIN = 200;
    uint256 internal constant VALIDATOR_LOSS = 1_000;
    uint256 internal constant ABSENT_LOSS = 500;
    uint256 internal constant VALIDATOR_SHARE_BPS = 1_000;
    /// Score words of set member k live at keys k·8 + w (w < 7); word 0 holds the commitment until the reveal.
    uint256 internal constant WORDS_PER_MEMBER_LOG2 = 3;

    /// A round's scores as finalization (and the tally view) sees them.
    struct Round {
        uint256 n; // updates
        uint256 v; // set members
        address[] members;
        uint256[] weights; // frozen at round open
        uint256 revealed; // bit k: member k revealed
        uint256 revealCount;
        int256[] consensus; // per update
        uint256[] distance; // per member: Σ min(|s - c|, SCORE_ONE) over the updates (revealed members only)
        uint256 accepted; // bitmap: consensus > 0 and revealCount ≥ quorum
        bool quorate;
        uint256 predictor; // Σ min(|p_i - c_i|, SCORE_ONE): the public record's distance (p_i the last consensus)
    }

    // ─── Opening ────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Opens round `round` of `taskId` now (ledger time `t`) on `base`, freezing its validator set: the
    /// validators holding the role, each weighted by its validator reputation now. Writes the live round and
    /// emits RoundOpened. `previousCount` and `previousEpoch` describe the set of the round before (0 for a new
    /// task): positions are rewritten only when the composition changed.
    /// @return count the size of the set.
    function openRound(
        LedgerStore storage s,
        uint256 taskId,
        uint32 round,
        bytes32 base,
        uint64 t,
        uint256 previousCount,
        uint24 previousEpoch
    ) public returns (uint8 count) {
        return _open(s, taskId, round, base, t, previousCount, previousEpoch, new address[](0));
    }

    /// As {openRound}; `previous` is the set of the round before, reused as is when the validator list has not
    /// changed since that set was frozen (its members then need no reading, comparing or writing).
    function _open(
        LedgerStore storage s,
        uint256 taskId,
        uint32 round,
        bytes32 base,
        uint64 t,
        uint256 previousCount,
        uint24 previousEpoch,
        address[] memory previous
    ) private returns (uint8 count) {
        (address[] memory addrs, uint16[] memory weights, bool changed) = _freeze(s, taskId, previousCount, previous);
        uint24 epoch = previousEpoch;
        if (changed || previousEpoch == 0) {
            // Checked: a task supports 2^24 - 1 compositions of its validator set (a change needs a finalized
            // round each, so this is never reached; reverting beats reusing an epoch).
            epoch = previousEpoch + 1;
            mapping(address => Position) storage positions = s.positions[taskId];
            for (uint256 k; k < addrs.length; ++k) {
                // forge-lint: disable-next-line(unsafe-typecast) k < MAX_VALIDATORS = 32
                positions[addrs[k]] = Position({epoch: epoch, index: uint8(k)});
            }
        }
        // forge-lint: disable-next-line(unsafe-typecast) at most MAX_VALIDATORS = 32 validators
        count = uint8(addrs.length);
        s.live[taskId] = Live({
            round: round,
            openedAt: uint40(t),
            closedAt: 0,
            commitClosedAt: 0,
            submissionCount: 0,
            validatorCount: count,
            committed: 0,
            revealed: 0,
            setEpoch: epoch
        });
        emit IMeshLedger.RoundOpened(taskId, round, msg.sender, base, t, addrs, weights);
    }

    /// Copies the validator list into the task's set (only the members that changed are written; nothing is read
    /// when the list is the one the previous set was frozen from) and the members' validator reputations into the
    /// packed weight words (16 per word).
    function _freeze(LedgerStore storage s, uint256 taskId, uint256 previousCount, address[] memory previous)
        private
        returns (address[] memory addrs, uint16[] memory weights, bool changed)
    {
        Config storage cfg = s.configs[taskId];
        uint24 version = s.globals.listVersion;
        if (previous.length == previousCount && previousCount != 0 && cfg.listVersion == version) {
            addrs = previous;
        } else {
            address[] storage list = s.validatorList;
            uint256 v = list.length;
            addrs = new address[](v);
            changed = v != previousCount;
            mapping(uint256 => address) storage members = s.members[taskId];
            for (uint256 k; k < v; ++k) {
                address a = list[k];
                addrs[k] = a;
                if (members[k] != a) {
                    members[k] = a;
                    changed = true;
                }
            }
            cfg.listVersion = version;
        }
        weights = new uint16[](addrs.length);
        mapping(uint256 => uint256) storage weightWords = s.weights[taskId];
        uint256 word;
        for (uint256 k; k < addrs.length; ++k) {
            uint16 w = s.accounts[addrs[k]].validatorReputation;
            weights[k] = w;
            unchecked {
                word |= uint256(w) << ((k & 15) << 4);
                if (k & 15 == 15 || k + 1 == addrs.length) {
                    weightWords[k >> 4] = word;
                    word = 0;
                }
            }
        }
    }

    // ─── Ending ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Ends the live round `live` of `taskId` at ledger time `t` — finalized by the aggregator with
    /// `aggregate`, or carried over (`carriedOver`, `aggregate` = the base) — settles it and opens the next.
    function finalize(
        LedgerStore storage s,
        uint256 taskId,
        Live memory live,
        uint64 t,
        bytes32 aggregate,
        bool carriedOver
    ) external {
        Config storage cfg = s.configs[taskId];
        uint32 round = live.round;
        Round memory r = _load(s, taskId, live, cfg.quorum);
        if (r.accepted == 0) {
            bytes32 base = round == 1 ? cfg.genesisDigest : s.aggregates[taskId][round - 1];
            if (aggregate != base) revert IMeshLedger.MeshLedger_AggregateMustBeBase(base, aggregate);
        } else if (aggregate == bytes32(0)) {
            revert IMeshLedger.MeshLedger_InvalidDigest(aggregate);
        }
        s.aggregates[taskId][round] = aggregate;
        bytes memory data = _settle(s, taskId, r, carriedOver ? 0 : cfg.rewardPerRound);
        // A carry-over uses no update: the accepted set it records is empty (the base carries over).
        _header(data, aggregate, carriedOver ? 0 : r.accepted, cfg.rule, cfg.ruleParam, carriedOver);
        bytes32 topic = IMeshLedger.RoundFinalized.selector;
        // RoundFinalized(taskId, round, msg.sender, ...data): the data is the event's ABI encoding, written in
        // place by the settlement (see _header), so no Settlement struct is allocated or re-encoded.
        assembly ("memory-safe") {
            log4(add(data, 0x20), mload(data), topic, taskId, round, caller())
        }
        _open(s, taskId, round + 1, aggregate, t, live.validatorCount, live.setEpoch, r.members);
    }

    /// @notice The consensus of every update of the live round from the reveals so far, and the accepted set.
    function consensus(LedgerStore storage s, uint256 taskId, Live memory live)
        external
        view
        returns (int16[] memory out, uint256 accepted)
    {
        Round memory r = _load(s, taskId, live, s.configs[taskId].quorum);
        out = new int16[](r.n);
        for (uint256 i; i < r.n; ++i) {
            // forge-lint: disable-next-line(unsafe-typecast) a consensus is one of the int16 scores, or 0
            out[i] = int16(r.consensus[i]);
        }
        return (out, r.accepted);
    }

    // ─── Consensus ──────────────────────────────────────────────────────────────────────────────────────────

    /// Reads the set, its weights and the revealed scores, and computes each update's consensus (the lower
    /// weighted median, unrevealed members counting 0 with their weight), the members' distances and the
    /// accepted set.
    function _load(LedgerStore storage s, uint256 taskId, Live memory live, uint16 quorum)
        private
        view
        returns (Round memory r)
    {
        r.n = live.submissionCount;
        r.v = live.validatorCount;
        r.revealed = live.revealed;
        r.revealCount = r.revealed.popcount();
        r.quorate = r.revealCount >= quorum;
        r.members = new address[](r.v);
        r.weights = new uint256[](r.v);
        r.consensus = new int256[](r.n);
        r.distance = new uint256[](r.v);
        // The revealed members, compacted: their set index, weight and decoded score words.
        uint256 wpm = (r.n + 15) >> 4;
        uint256[] memory index = new uint256[](r.revealCount);
        uint256[] memory weight = new uint256[](r.revealCount);
        uint256[] memory words = new uint256[](r.revealCount * wpm);
        uint256 total;
        uint256 absent;
        {
            mapping(uint256 => address) storage members = s.members[taskId];
            mapping(uint256 => uint256) storage scoreWords = s.scoreWords[taskId];
            uint256 weightWord;
            uint256 m;
            for (uint256 k; k < r.v; ++k) {
                r.members[k] = members[k];
                if (k & 15 == 0) weightWord = s.weights[taskId][k >> 4];
                uint256 w = (weightWord >> ((k & 15) << 4)) & 0xFFFF;
                r.weights[k] = w;
                total += w;
                if ((r.revealed >> k) & 1 == 0) {
                    absent += w;
                    continue;
                }
                index[m] = k;
                weight[m] = w;
                for (uint256 j; j < wpm; ++j) {
                    words[m * wpm + j] = scoreWords[(k << WORDS_PER_MEMBER_LOG2) + j] ^ Consensus.FLIP;
                }
                ++m;
            }
        }
        uint256[] memory distance = new uint256[](r.revealCount);
        int256[] memory scores = new int256[](r.revealCount);
        for (uint256 i; i < r.n; ++i) {
            int256 c = _consensusOf(i, words, wpm, scores, weight, distance, absent, total);
            r.consensus[i] = c;
            if (r.quorate && c > 0) r.accepted |= uint256(1) << i;
        }
        for (uint256 j; j < index.length; ++j) {
            r.distance[index[j]] = distance[j];
        }
    }

    /// Update `i`'s consensus: the lower weighted median of the revealed members' scores (`weight`) plus the value
    /// 0 with weight `absent` — the smallest candidate x with 2 × weight(values ≤ x) ≥ `total`, found pairwise
    /// (no sort: a set holds at most 32 members). Adds each revealed member's capped distance to `distance`.
    /// @dev Assembly because it runs once per update and member pair: Solidity's bounds checks on these small
    /// memory arrays cost more than the arithmetic. Every index stays below the arrays' lengths by construction.
    function _consensusOf(
        uint256 i,
        uint256[] memory words,
        uint256 wpm,
        int256[] memory scores,
        uint256[] memory weight,
        uint256[] memory distance,
        uint256 absent,
        uint256 total
    ) private pure returns (int256 c) {
        assembly ("memory-safe") {
            let m := mload(scores)
            let sp := add(scores, 0x20)
            let wp := add(weight, 0x20)
            let shift := shl(4, and(i, 15))
            let column := shr(4, i)
            for { let j := 0 } lt(j, m) { j := add(j, 1) } {
                let word := mload(add(add(words, 0x20), shl(5, add(mul(j, wpm), column))))
                mstore(add(sp, shl(5, j)), sar(240, shl(shift, word)))
            }
            c := 0
            if total {
                c := shr(1, not(0)) // the largest int256: no candidate yet
                if absent {
                    let cumulative := absent
                    for { let j := 0 } lt(j, m) { j := add(j, 1) } {
                        if iszero(sgt(mload(add(sp, shl(5, j))), 0)) {
                            cumulative := add(cumulative, mload(add(wp, shl(5, j))))
                        }
                    }
                    if iszero(lt(shl(1, cumulative), total)) { c := 0 }
                }
                for { let k := 0 } lt(k, m) { k := add(k, 1) } {
                    let x := mload(add(sp, shl(5, k)))
                    if slt(x, c) {
                        let cumulative := 0
                        if iszero(slt(x, 0)) { cumulative := absent }
                        for { let j := 0 } lt(j, m) { j := add(j, 1) } {
                            if iszero(sgt(mload(add(sp, shl(5, j))), x)) {
                                cumulative := add(cumulative, mload(add(wp, shl(5, j))))
                            }
                        }
                        if iszero(lt(shl(1, cumulative), total)) { c := x }
                    }
                }
            }
            let dp := add(distance, 0x20)
            for { let j := 0 } lt(j, m) { j := add(j, 1) } {
                let d := sub(mload(add(sp, shl(5, j))), c)
                if slt(d, 0) { d := sub(0, d) }
                if gt(d, 10000) { d := 10000 }
                let at := add(dp, shl(5, j))
                mstore(at, add(mload(at), d))
            }
        }
    }

    // ─── Settlement ─────────────────────────────────────────────────────────────────────────────────────────

    // The RoundFinalized data, ABI-encoded: six head words (aggregateDigest, acceptedBitmap, rule, ruleParam,
    // carriedOver, the offset 0xc0 of the settlements), then the array: its length and seven words per Settlement
    // (account, role, reputation, reward, score sign-extended, distance, absent).
    uint256 private constant HEAD = 0xe0; // six head words and the array length
    uint256 private constant ITEM = 0xe0; // seven words per settlement

    function _header(bytes memory data, bytes32 aggregate, uint256 accepted, uint8 rule, uint32 ruleParam, bool carried)
        private
        pure
    {
        assembly ("memory-safe") {
            let p := add(data, 0x20)
            mstore(p, aggregate)
            mstore(add(p, 0x20), accepted)
            mstore(add(p, 0x40), rule)
            mstore(add(p, 0x60), ruleParam)
            mstore(add(p, 0x80), carried)
            mstore(add(p, 0xa0), 0xc0)
            mstore(add(p, 0xc0), div(sub(mload(data), HEAD), ITEM))
        }
    }

    /// Writes settlement `j` into the event data; `weight` stands in the reward word until _pay replaces it.
    function _put(
        bytes memory data,
        uint256 j,
        address account,
        IMeshLedger.Role role,
        uint16 rep,
        uint256 weight,
        int256 score,
        uint256 distance,
        bool absent
    ) private pure {
        assembly ("memory-safe") {
            let p := add(add(data, add(0x20, HEAD)), mul(j, ITEM))
            mstore(p, account)
            mstore(add(p, 0x20), role)
            mstore(add(p, 0x40), rep)
            mstore(add(p, 0x60), weight)
            mstore(add(p, 0x80), score)
            mstore(add(p, 0xa0), distance)
            mstore(add(p, 0xc0), absent)
        }
    }

    /// Settles every participant: contributors first (update-index order), then every member of the round's
    /// validator set (set order). `budget` is 0 for a carry-over. Reputations and rewards are written to each
    /// participant's account slot; the settlements are written into the RoundFinalized data.
    function _settle(LedgerStore storage s, uint256 taskId, Round memory r, uint256 budget)
        private
        returns (bytes memory data)
    {
        data = new bytes(HEAD + ITEM * (r.n + r.v));
        // Below the quorum nothing was accepted and nobody is paid (a lone revealer would be its own median).
        if (!r.quorate) budget = 0;
        uint256 validatorShare = budget * VALIDATOR_SHARE_BPS / 10_000;
        uint256 total = _settleContributors(s, taskId, r, data);
        _pay(s, data, 0, r.n, budget - validatorShare, total);
        total = _settleValidators(s, r, data);
        _pay(s, data, r.n, r.n + r.v, validatorShare, total);
    }

    /// Contributors: with a quorum of reveals, consensus c > 0 raises the reputation by GAIN·c/SCORE_ONE and
    /// weighs c² × reputation-before in the contributors' share; c < 0 lowers it by LOSS·|c|/SCORE_ONE. Without a
    /// quorum nothing moves (the validators failed, not the members). Returns the total weight.
    function _settleContributors(LedgerStore storage s, uint256 taskId, Round memory r, bytes memory data)
        private
        returns (uint256 total)
    {
        mapping(uint256 => Entry) storage entries = s.entries[taskId];
        for (uint256 i; i < r.n; ++i) {
            address who = entries[i].contributor;
            int256 c = r.consensus[i];
            Account storage a = s.accounts[who];
            uint16 old = a.contributorReputation;
            uint16 rep = old;
            uint256 weight;
            // The public record: this contributor's last settled consensus (0 when it has none yet).
            uint16 last = a.lastConsensus;
            r.predictor += Consensus.cappedDistance(last == 0 ? int256(0) : int256(uint256(last)) - 10_001, c);
            // forge-lint: disable-next-line(unsafe-typecast) c ∈ [-10_000, 10_000]: c + 10_001 ∈ [1, 20_001]
            uint16 next = uint16(uint256(c + 10_001));
            if (r.quorate && c > 0) {
                rep = Consensus.raise(old, CONTRIBUTOR_GAIN * uint256(c) / 10_000, REPUTATION_MAX);
                // c ≤ 10^4 and reputation ≤ 10^4: a weight is at most 10^12, their sum below 2^47.
                weight = uint256(c) * uint256(c) * old;
                total += weight;
            } else if (r.quorate && c < 0) {
                rep = Consensus.lower(old, CONTRIBUTOR_LOSS * uint256(-c) / 10_000, REPUTATION_MIN);
            }
            if (rep != old || next != last) {
                a.contributorReputation = rep;
                a.lastConsensus = next;
            }
            _put(data, i, who, IMeshLedger.Role.Contributor, rep, weight, c, 0, false);
        }
    }

    /// Validators: those that revealed are measured by their mean capped distance d to the consensus against the
    /// round's tolerance r (DISTANCE_TOLERANCE × the upper weighted median of the revealed distances, at least
    /// DISTANCE_TOLERANCE × DISTANCE_FLOOR): +GAIN when d ≤ r, else -min(LOSS, LOSS·(d - r)/r); their share split
    /// by reputation-before × A, A = max(0, 1 - d/r_p) with r_p = min(r, d_p), d_p the mean distance of the
    /// contributors' last consensus to this one (anti-lazy). Below the quorum the revealers'
    /// reputations do not move. Absent members lose ABSENT_LOSS and earn nothing. Returns the total weight.
    function _settleValidators(LedgerStore storage s, Round memory r, bytes memory data)
        private
        returns (uint256 total)
    {
        uint256[] memory distance = new uint256[](r.v);
        if (r.n != 0) {
            for (uint256 k; k < r.v; ++k) {
                distance[k] = r.distance[k] / r.n;
            }
        }
        uint256 tol = Consensus.tolerance(distance, r.weights, r.revealed);
        // Pay is measured against min(r, the public record's distance d_p): a validator earns only by landing
        // closer to the consensus than the last consensus of each contributor does (anti-lazy, R5); its
        // reputation still follows r.
        uint256 payTol = tol;
        if (r.n != 0 && r.predictor / r.n < payTol) payTol = r.predictor / r.n;
        for (uint256 k; k < r.v; ++k) {
            address who = r.members[k];
            Account storage a = s.accounts[who];
            uint16 old = a.validatorReputation;
            uint16 rep = old;
            uint256 weight;
            bool absent = (r.revealed >> k) & 1 == 0;
            if (absent) {
                rep = Consensus.lower(old, ABSENT_LOSS, REPUTATION_MIN);
            } else {
                uint256 d = distance[k];
                if (!r.quorate) {
                    // The round failed for want of reveals: the revealers did their part, nothing moves.
                } else if (d <= tol) {
                    rep = Consensus.raise(old, VALIDATOR_GAIN, REPUTATION_MAX);
                } else {
                    uint256 step = VALIDATOR_LOSS * (d - tol) / tol;
                    rep = Consensus.lower(old, step < VALIDATOR_LOSS ? step : VALIDATOR_LOSS, REPUTATION_MIN);
                }
                weight = uint256(old) * Consensus.agreement(d, payTol);
                total += weight;
            }
            if (rep != old) a.validatorReputation = rep;
            _put(data, r.n + k, who, IMeshLedger.Role.Validator, rep, weight, 0, absent ? 0 : distance[k], absent);
        }
    }

    /// Replaces the weights of settlements [from, to) by their share of `share` (rounded down) and accrues each
    /// reward in its account. The rounding dust and the shares nobody earned are never accrued.
    function _pay(LedgerStore storage s, bytes memory data, uint256 from, uint256 to, uint256 share, uint256 total)
        private
    {
        for (uint256 j = from; j < to; ++j) {
            address who;
            uint256 weight;
            uint256 at;
            assembly ("memory-safe") {
                at := add(add(data, add(0x20, HEAD)), mul(j, ITEM))
                who := mload(at)
                weight := mload(add(at, 0x60))
            }
            if (weight == 0) continue;
            uint256 reward = share * weight / total;
            assembly ("memory-safe") {
                mstore(add(at, 0x60), reward)
            }
            // An account accrues below 2^96 per round: 2^32 rounds stay below 2^128.
            // forge-lint: disable-next-line(unsafe-typecast) reward ≤ share < 2^96
            if (reward != 0) s.accounts[who].accrued += uint128(reward);
        }
    }
}
