// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "./interfaces/IMeshLedger.sol";
import {Bits} from "./libraries/Bits.sol";
import {Consensus} from "./libraries/Consensus.sol";
import {Entry, Live, Config, LedgerStore, Member, Position, Reputations, Seated, Tally} from "./libraries/LedgerStore.sol";

/// @title RoundSettlement
/// @notice The end of a round (protocol v2, docs/protocol.md R4–R6): the consensus of every update from the
/// revealed scores, the accepted set, every settlement, and the opening of the next round with a freshly frozen
/// validator set. An EXTERNAL library: MeshLedger calls it by DELEGATECALL on its own storage (`LedgerStore`), so
/// its events are the ledger's events. It exists to keep MeshLedger under the 24,576-byte limit (EIP-170): a
/// deployment deploys it first and links its address into MeshLedger's bytecode (ledger/chain/deploy.py).
library RoundSettlement {
    using Bits for uint256;
    using Reputations for LedgerStore;

    uint32 internal constant REPUTATION_MIN = 100;
    uint32 internal constant REPUTATION_MAX = 10_000;
    uint32 internal constant CONTRIBUTOR_GAIN = 500;
    uint32 internal constant CONTRIBUTOR_LOSS = 1_500;
    uint32 internal constant VALIDATOR_GAIN = 200;
    uint32 internal constant VALIDATOR_LOSS = 1_000;
    uint32 internal constant ABSENT_LOSS = 500;
    uint256 internal constant VALIDATOR_SHARE_BPS = 1_000;
    /// Score words of set member k live at keys k·8 + w (w < 7); word 0 holds the commitment until the reveal.
    uint256 internal constant WORDS_PER_MEMBER_LOG2 = 3;

    /// @notice Freezes the validator set of round `round` of `taskId`, opening now (ledger time `t`) on `base`:
    /// the validators holding the role, each weighted by its validator reputation now. Writes the live round and
    /// emits RoundOpened.
    /// @return count the size of the set.
    function openRound(LedgerStore storage s, uint256 taskId, uint32 round, bytes32 base, uint64 t)
        public
        returns (uint8 count)
    {
        (address[] memory addrs, uint16[] memory weights) = _freeze(s, taskId, round);
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
            revealed: 0
        });
        emit IMeshLedger.RoundOpened(taskId, round, msg.sender, base, t, addrs, weights);
    }

    /// Copies the validator list into the task's set, with each member's validator reputation as its weight.
    function _freeze(LedgerStore storage s, uint256 taskId, uint32 round)
        private
        returns (address[] memory addrs, uint16[] memory weights)
    {
        Seated[] storage list = s.validatorList;
        addrs = new address[](list.length);
        weights = new uint16[](list.length);
        mapping(uint256 => Member) storage members = s.members[taskId];
        mapping(address => Position) storage positions = s.positions[taskId];
        for (uint256 k; k < addrs.length; ++k) {
            Seated memory seated = list[k];
            // forge-lint: disable-next-line(unsafe-typecast) reputations never exceed REPUTATION_MAX = 10_000
            uint16 weight = uint16(s.get(seated.seat, IMeshLedger.Role.Validator));
            members[k] = Member({member: seated.member, seat: seated.seat, weight: weight});
            // forge-lint: disable-next-line(unsafe-typecast) k < MAX_VALIDATORS = 32
            positions[seated.member] = Position({round: round, index: uint8(k)});
            addrs[k] = seated.member;
            weights[k] = weight;
        }
    }

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
        Tally memory tl = _tally(s, taskId, live, cfg.quorum);
        if (tl.accepted == 0) {
            bytes32 base = round == 1 ? cfg.genesisDigest : s.aggregates[taskId][round - 1];
            if (aggregate != base) revert IMeshLedger.MeshLedger_AggregateMustBeBase(base, aggregate);
        } else if (aggregate == bytes32(0)) {
            revert IMeshLedger.MeshLedger_InvalidDigest(aggregate);
        }
        s.aggregates[taskId][round] = aggregate;
        IMeshLedger.Settlement[] memory settlements =
            _settle(s, taskId, tl, live.submissionCount, carriedOver ? 0 : cfg.rewardPerRound, cfg.quorum);
        // A carry-over uses no update: the accepted set it records is empty (the base carries over).
        emit IMeshLedger.RoundFinalized(
            taskId,
            round,
            msg.sender,
            aggregate,
            carriedOver ? 0 : tl.accepted,
            cfg.rule,
            cfg.ruleParam,
            carriedOver,
            settlements
        );
        openRound(s, taskId, round + 1, aggregate, t);
    }

    /// @notice The consensus of every update of the live round from the reveals so far, and the accepted set.
    function consensus(LedgerStore storage s, uint256 taskId, Live memory live)
        external
        view
        returns (int16[] memory, uint256)
    {
        Tally memory t = _tally(s, taskId, live, s.configs[taskId].quorum);
        return (t.consensus, t.accepted);
    }

    /// The consensus of every update (lower weighted median of the set's scores, unrevealed members counting 0
    /// with their weight) and the accepted set (consensus > 0, and at least `quorum` reveals).
    function _tally(LedgerStore storage s, uint256 taskId, Live memory live, uint16 quorum)
        private
        view
        returns (Tally memory t)
    {
        uint256 v = live.validatorCount;
        uint256 n = live.submissionCount;
        t.wpm = (n + 15) >> 4;
        t.members = new Member[](v);
        t.words = new uint256[](v * t.wpm);
        t.revealed = live.revealed;
        t.revealCount = t.revealed.popcount();
        uint256 total;
        for (uint256 k; k < v; ++k) {
            Member memory m = s.members[taskId][k];
            t.members[k] = m;
            total += m.weight;
            if ((t.revealed >> k) & 1 == 0) continue;
            uint256 base = k << WORDS_PER_MEMBER_LOG2;
            for (uint256 w; w < t.wpm; ++w) {
                t.words[k * t.wpm + w] = s.scoreWords[taskId][base + w] ^ Consensus.FLIP;
            }
        }
        t.consensus = new int16[](n);
        int256[] memory values = new int256[](v + 1);
        uint256[] memory weights = new uint256[](v + 1);
        bool quorate = t.revealCount >= quorum;
        for (uint256 i; i < n; ++i) {
            uint256 count;
            uint256 absent = total;
            for (uint256 k; k < v; ++k) {
                if ((t.revealed >> k) & 1 == 0) continue;
                values[count] = Consensus.lane(t.words[k * t.wpm + (i >> 4)], i);
                weights[count] = t.members[k].weight;
                absent -= weights[count];
                ++count;
            }
            if (absent != 0) {
                values[count] = 0;
                weights[count] = absent;
                ++count;
            }
            int256 c = Consensus.lowerWeightedMedian(values, weights, count, total);
            // forge-lint: disable-next-line(unsafe-typecast) the median is one of the int16 scores, or 0
            t.consensus[i] = int16(c);
            if (quorate && c > 0) t.accepted |= uint256(1) << i;
        }
    }

    /// Settles every participant: contributors first (update-index order), then every member of the round's
    /// validator set (set order). `budget` is 0 for a carry-over. Rewards accrue in the accounts.
    function _settle(LedgerStore storage s, uint256 taskId, Tally memory t, uint256 n, uint256 budget, uint16 quorum)
        private
        returns (IMeshLedger.Settlement[] memory out)
    {
        out = new IMeshLedger.Settlement[](n + t.members.length);
        uint256 validatorShare = budget * VALIDATOR_SHARE_BPS / 10_000;
        _settleContributors(s, taskId, t, n, budget - validatorShare, t.revealCount >= quorum, out);
        _settleValidators(s, t, n, validatorShare, out);
        for (uint256 j; j < out.length; ++j) {
            uint256 reward = out[j].reward;
            // An account accrues below 2^96 per round: 2^32 rounds stay below 2^128.
            // forge-lint: disable-next-line(unsafe-typecast) reward ≤ budget < 2^96
            if (reward != 0) s.accounts[out[j].account].accrued += uint128(reward);
        }
    }

    /// Contributors: with a quorum of reveals, consensus c > 0 raises the reputation by GAIN·c/SCORE_ONE and
    /// weighs c² × reputation-before in the contributors' share; c < 0 lowers it by LOSS·|c|/SCORE_ONE. Without a
    /// quorum nothing moves (the validators failed, not the members).
    function _settleContributors(
        LedgerStore storage s,
        uint256 taskId,
        Tally memory t,
        uint256 n,
        uint256 share,
        bool quorate,
        IMeshLedger.Settlement[] memory out
    ) private {
        mapping(uint256 => Entry) storage entries = s.entries[taskId];
        uint256 total;
        for (uint256 i; i < n; ++i) {
            Entry memory e = entries[i];
            (uint32 rep, uint256 weight) = _contributorStep(s, e.seat, t.consensus[i], quorate);
            total += weight;
            out[i] = IMeshLedger.Settlement({
                account: e.contributor,
                role: IMeshLedger.Role.Contributor,
                reputation: rep,
                reward: weight, // the weight until the total is known
                score: t.consensus[i],
                distance: 0,
                absent: false
            });
        }
        for (uint256 i; i < n; ++i) {
            if (out[i].reward != 0) out[i].reward = share * out[i].reward / total;
        }
    }

    /// One contributor's new reputation (stored) and reward weight for consensus `c`.
    function _contributorStep(LedgerStore storage s, uint16 seat, int256 c, bool quorate)
        private
        returns (uint32 rep, uint256 weight)
    {
        uint32 old = s.get(seat, IMeshLedger.Role.Contributor);
        rep = old;
        if (quorate && c > 0) {
            rep = Consensus.raise(old, CONTRIBUTOR_GAIN * uint256(c) / 10_000, REPUTATION_MAX);
            // c ≤ 10^4 and reputation ≤ 10^4: a weight is at most 10^12, their sum below 2^47.
            weight = uint256(c) * uint256(c) * old;
        } else if (quorate && c < 0) {
            rep = Consensus.lower(old, CONTRIBUTOR_LOSS * uint256(-c) / 10_000, REPUTATION_MIN);
        }
        if (rep != old) s.set(seat, IMeshLedger.Role.Contributor, rep);
    }

    /// Validators: those that revealed are measured by their mean capped distance d to the consensus, agreement
    /// A = max(0, 1 - d/DISTANCE_SCALE): +GAIN when A ≥ ½, else -LOSS·(½ - A)/½; their share split by
    /// reputation-before × A. Absent members lose ABSENT_LOSS and earn nothing.
    function _settleValidators(LedgerStore storage s, Tally memory t, uint256 n, uint256 share, IMeshLedger.Settlement[] memory out)
        private
    {
        uint256 total;
        for (uint256 k; k < t.members.length; ++k) {
            Member memory m = t.members[k];
            bool absent = (t.revealed >> k) & 1 == 0;
            uint256 distance = absent ? 0 : _distance(t, k, n);
            (uint32 rep, uint256 weight) = _validatorStep(s, m.seat, absent, distance);
            total += weight;
            out[n + k] = IMeshLedger.Settlement({
                account: m.member,
                role: IMeshLedger.Role.Validator,
                reputation: rep,
                reward: weight,
                score: 0,
                // forge-lint: disable-next-line(unsafe-typecast) a mean of values ≤ SCORE_ONE
                distance: uint16(distance),
                absent: absent
            });
        }
        for (uint256 j = n; j < out.length; ++j) {
            if (out[j].reward != 0) out[j].reward = share * out[j].reward / total;
        }
    }

    /// One validator's new reputation (stored) and reward weight (reputation-before × agreement).
    function _validatorStep(LedgerStore storage s, uint16 seat, bool absent, uint256 distance)
        private
        returns (uint32 rep, uint256 weight)
    {
        uint32 old = s.get(seat, IMeshLedger.Role.Validator);
        if (absent) {
            rep = Consensus.lower(old, ABSENT_LOSS, REPUTATION_MIN);
        } else {
            uint256 a = Consensus.agreement(distance);
            rep = a >= 5_000
                ? Consensus.raise(old, VALIDATOR_GAIN, REPUTATION_MAX)
                : Consensus.lower(old, VALIDATOR_LOSS * (5_000 - a) / 5_000, REPUTATION_MIN);
            weight = uint256(old) * a;
        }
        if (rep != old) s.set(seat, IMeshLedger.Role.Validator, rep);
    }

    /// Member k's mean over the round's updates of min(|s - c|, SCORE_ONE) (0 for a round without updates).
    function _distance(Tally memory t, uint256 k, uint256 n) private pure returns (uint256) {
        if (n == 0) return 0;
        uint256 sum;
        uint256 first = k * t.wpm;
        for (uint256 i; i < n; ++i) {
            sum += Consensus.cappedDistance(Consensus.lane(t.words[first + (i >> 4)], i), t.consensus[i]);
        }
        return sum / n;
    }
}
