// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MeshLedger} from "../../src/MeshLedger.sol";
import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Consensus} from "../../src/libraries/Consensus.sol";
import {CheatCodes} from "../utils/Test.sol";
import {Vm} from "../utils/Vm.sol";

/// @notice Drives one task of a small consortium through random sequences of submissions (direct and relayed,
/// sometimes claiming too many samples), score commitments and reveals (sometimes tampered, late or by
/// outsiders), finalizations, carry-overs, claims, pauses, delayed role changes and time. Every call the ledger
/// accepts is mirrored in ghost state, and the handler recomputes each round's consensus, accepted set and reward
/// shares itself from the scores it revealed; the counters of "impossible" events must stay zero.
contract LedgerHandler is CheatCodes {
    bytes32 internal constant CONTRIBUTOR = keccak256("CONTRIBUTOR_ROLE");
    bytes32 internal constant VALIDATOR = keccak256("VALIDATOR_ROLE");
    uint256 internal constant N_ACTORS = 10;
    uint16 public constant QUORUM = 2;
    uint128 public constant BUDGET = 1_000 ether;
    uint64 public constant MAX_SAMPLES = 1_000_000;
    uint64 public constant ROLE_DELAY = 100;
    uint32 internal constant WINDOW = 1_000;
    bytes32 internal constant SALT = keccak256("salt");

    MeshLedger public immutable ledger;
    MeshToken public immutable token;
    address public immutable admin;
    address public immutable aggregator;
    uint256 public immutable taskId;

    address[] public actors;
    uint256[] internal keys;

    // ─── ghost roles (this handler is the only one changing them) ───
    mapping(address => bool) public isContributor;
    mapping(address => bool) public isValidator;
    mapping(address => bool) public everContributor;
    mapping(address => bool) public everValidator;

    // ─── ghost rounds ───
    uint32 public ghostRound = 1;
    mapping(uint32 round => address[]) internal _updates;
    mapping(uint32 round => mapping(address => uint256)) public updatesBy;
    mapping(uint32 round => address[]) internal _set; // frozen at the round's opening
    mapping(uint32 round => uint256[]) internal _weights;
    mapping(uint32 round => mapping(address => bool)) public committed;
    mapping(uint32 round => mapping(address => bool)) public revealed;
    mapping(uint32 round => mapping(address => int256[])) internal _scores;

    uint256 public ghostAccrued; // every reward in RoundFinalized settlements
    uint256 public ghostClaimed; // every amount claimRewards returned
    uint256 public rounds;
    uint256 public carryOvers;
    uint256 public acceptedUpdates;
    uint256 public reveals;

    // ─── violations: each must stay zero ───
    uint256 public updatesByNonContributors;
    uint256 public duplicateUpdates;
    uint256 public samplesAboveMax;
    uint256 public commitsByOutsiders;
    uint256 public duplicateCommits;
    uint256 public lateCommits;
    uint256 public revealsWithoutCommitment;
    uint256 public tamperedRevealsAccepted;
    uint256 public outcomeMismatches;
    uint256 public honestRefusals;
    uint256 public rewardViolations;
    uint256 public carryOverViolations;
    uint256 public actionsWhilePaused;
    uint256 public pauseShifts;
    uint256 public setViolations;
    uint256 public backwardSteps;

    /// Each contributor's last settled consensus + 10_001 (0: none): the public record validators' pay is
    /// measured against (R5, anti-lazy).
    mapping(address => int256) internal _lastConsensus;

    uint32 internal _lastRound = 1;
    uint8 internal _lastPhase;

    constructor() {
        vm.warp(1_700_000_000);
        admin = address(this);
        aggregator = address(0xA66);
        token = new MeshToken();
        ledger = new MeshLedger(admin, token, ROLE_DELAY);
        token.setMinter(address(ledger));
        ledger.grantRole(keccak256("AGGREGATOR_ROLE"), aggregator);
        for (uint256 i; i < N_ACTORS; ++i) {
            uint256 key = 0xAC7000 + i;
            keys.push(key);
            actors.push(vm.addr(key));
        }
        // Actors 0-5 contributors, 6-8 validators, 9 a stranger; role changes reshuffle the last three over time.
        for (uint256 i; i < 6; ++i) {
            ledger.grantRole(CONTRIBUTOR, actors[i]);
            (isContributor[actors[i]], everContributor[actors[i]]) = (true, true);
        }
        for (uint256 i = 6; i < 9; ++i) {
            ledger.grantRole(VALIDATOR, actors[i]);
            (isValidator[actors[i]], everValidator[actors[i]]) = (true, true);
        }
        taskId = ledger.createTask(
            IMeshLedger.TaskParams({
                specDigest: keccak256("spec"),
                genesisDigest: keccak256("genesis"),
                rule: 0,
                ruleParam: 0,
                quorum: QUORUM,
                submissionWindow: WINDOW,
                commitWindow: WINDOW,
                revealWindow: WINDOW,
                finalizeGrace: WINDOW,
                maxSamples: MAX_SAMPLES,
                rewardPerRound: BUDGET
            })
        );
        _freezeGhostSet(1);
        _lastPhase = uint8(IMeshLedger.Phase.Open);
    }

    function actorCount() external pure returns (uint256) {
        return N_ACTORS;
    }

    // ─── actions ───────────────────────────────────────────────────────────────────────────────────────────

    function submit(uint256 actorSeed, uint256 digestSeed, uint64 samples) external {
        address who = _pick(actorSeed, true);
        uint32 round = ghostRound;
        // Digests repeat across members now and then (the ledger records both: the file names the author).
        bytes32 digest = keccak256(abi.encode(digestSeed % 5, round));
        samples = uint64(bound(samples, 1, MAX_SAMPLES + MAX_SAMPLES / 4)); // sometimes above the cap
        bool paused = ledger.paused();
        vm.prank(who);
        try ledger.submitUpdate(taskId, round, digest, samples) returns (uint16 index) {
            _recordUpdate(who, round, index, samples, paused);
        } catch {}
        _observe();
    }

    function submitRelayed(uint256 actorSeed, uint256 digestSeed, uint64 samples, uint8 nonceSkew) external {
        address who = _pick(actorSeed, true);
        uint256 a = _indexOf(who);
        uint32 round = ghostRound;
        bytes32 digest = keccak256(abi.encode(digestSeed, round, "relayed"));
        samples = uint64(bound(samples, 1, MAX_SAMPLES + MAX_SAMPLES / 4));
        uint64 nonce = ledger.nonces(who) + (_mix(nonceSkew) % 5 == 0 ? 1 : 0); // sometimes a wrong nonce
        uint64 deadline = uint64(block.timestamp + 500);
        bytes32 hash = ledger.hashSubmission(taskId, round, digest, samples, nonce, deadline);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[a], hash);
        IMeshLedger.SignedSubmission memory sub =
            IMeshLedger.SignedSubmission(who, digest, samples, nonce, deadline, v, r, s);
        bool paused = ledger.paused();
        try ledger.submitUpdateFor(taskId, round, sub) returns (uint16 index) {
            _recordUpdate(who, round, index, samples, paused);
        } catch {}
        _observe();
    }

    /// A validator (mostly a member of the round's set, sometimes anyone) commits to scores of every update:
    /// mostly positive, but actor 0's updates mostly badly (a poor contributor whose reputation keeps falling).
    function commit(uint256 actorSeed, uint256 scoreSeed) external {
        _commitAs(_pick(actorSeed, false), scoreSeed);
        _observe();
    }

    function _commitAs(address who, uint256 scoreSeed) internal {
        uint32 round = ghostRound;
        uint256 n = _updates[round].length;
        int256[] memory scores = new int256[](n);
        for (uint256 i; i < n; ++i) {
            uint256 r = uint256(keccak256(abi.encode(scoreSeed, i)));
            scores[i] = int256(r % 12_001) - 2_000; // [-2000, 10000]
            if (_updates[round][i] == actors[0] && r % 4 != 0) scores[i] = -10_000;
        }
        bytes32 c = _commitment(round, who, scores);
        IMeshLedger.Phase phase = ledger.roundView(taskId, round).phase;
        bool paused = ledger.paused();
        vm.prank(who);
        try ledger.commitScores(taskId, round, c) {
            if (paused) ++actionsWhilePaused;
            if (!_inSet(round, who)) ++commitsByOutsiders;
            if (committed[round][who]) ++duplicateCommits;
            if (phase != IMeshLedger.Phase.Commit) ++lateCommits;
            committed[round][who] = true;
            _scores[round][who] = scores;
        } catch {}
    }

    /// A validator reveals what it committed — or, one time in five, something else (which must be refused).
    function reveal(uint256 actorSeed, uint256 tamperSeed) external {
        _revealAs(_pick(actorSeed, false), tamperSeed);
        _observe();
    }

    function _revealAs(address who, uint256 tamperSeed) internal {
        uint32 round = ghostRound;
        uint256 n = _updates[round].length;
        int256[] memory scores = _scores[round][who];
        if (scores.length != n) scores = new int256[](n); // nothing committed: an honest-looking guess
        bool tampered = _mix(tamperSeed) % 5 == 0 && n != 0;
        if (tampered) {
            int256[] memory other = new int256[](n);
            for (uint256 i; i < n; ++i) {
                other[i] = scores[i];
            }
            other[_mix(tamperSeed >> 8) % n] = scores[_mix(tamperSeed >> 8) % n] == 5_000 ? int256(4_999) : int256(5_000);
            scores = other;
        }
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        bool paused = ledger.paused();
        vm.prank(who);
        try ledger.revealScores(taskId, round, encoded, reasons, SALT) {
            if (paused) ++actionsWhilePaused;
            if (!committed[round][who]) ++revealsWithoutCommitment;
            if (tampered) ++tamperedRevealsAccepted;
            revealed[round][who] = true;
            ++reveals;
        } catch {}
    }

    /// Every member of the round's set that has not committed commits (when the commit phase is on), or every
    /// committer that has not revealed reveals (when the reveal phase is on): what the workers do.
    function scoreAll(uint256 scoreSeed) external {
        uint32 round = ghostRound;
        IMeshLedger.Phase phase = ledger.roundView(taskId, round).phase;
        for (uint256 k; k < _set[round].length; ++k) {
            address who = _set[round][k];
            if (phase == IMeshLedger.Phase.Commit && !committed[round][who]) {
                _commitAs(who, uint256(keccak256(abi.encode(scoreSeed, k))));
            } else if (phase == IMeshLedger.Phase.Reveal && committed[round][who] && !revealed[round][who]) {
                _revealAs(who, 1); // untampered: _mix(1) % 5 != 0
            }
        }
        _observe();
    }

    /// Finalizes the live round: one time in three it first waits out the reveal window when the round is in
    /// its reveal phase (never skipping submissions or commitments, or few rounds would see any). The ledger's outcome must be the handler's own consensus of the revealed scores, and an
    /// aggregator finalizing a finalizable round with the right aggregate must never be refused.
    function finalize(uint256 seed) external {
        seed = _mix(seed);
        uint32 round = ghostRound;
        IMeshLedger.RoundView memory view_ = ledger.roundView(taskId, round);
        if (view_.phase == IMeshLedger.Phase.Reveal && seed % 3 == 0) {
            _warpToLedger(view_.revealEnd);
            view_ = ledger.roundView(taskId, round);
        }
        (int256[] memory consensus, uint256 expected) = _expectedOutcome(round);
        bytes32 aggregate = expected == 0 ? ledger.baseDigest(taskId, round) : keccak256(abi.encode("aggregate", round));
        bool paused = ledger.paused();
        vm.recordLogs();
        vm.prank(aggregator);
        try ledger.finalizeRound(taskId, round, aggregate) {
            if (paused) ++actionsWhilePaused;
            (uint256 accepted,, uint256 toContributors, uint256 toValidators) = _logged();
            if (accepted != expected) ++outcomeMismatches;
            _checkRewards(round, consensus, expected, toContributors, toValidators);
            acceptedUpdates += _popcount(expected);
            _advance(round);
        } catch {
            if (view_.finalizable && !paused) ++honestRefusals;
        }
        _observe();
    }

    /// Anyone carries the round over once the grace is over (one time in three, when the round waits for its
    /// aggregator, it first waits out the grace).
    function carryOver(uint256 seed) external {
        seed = _mix(seed);
        uint32 round = ghostRound;
        IMeshLedger.RoundView memory view_ = ledger.roundView(taskId, round);
        if (view_.phase == IMeshLedger.Phase.Closed && seed % 3 == 0) _warpToLedger(view_.graceEnd);
        (uint64 ledgerNow,,) = ledger.clock();
        bool paused = ledger.paused();
        vm.recordLogs();
        vm.prank(actors[9]);
        try ledger.finalizeCarryOver(taskId, round) {
            if (paused) ++actionsWhilePaused;
            (uint256 accepted, bool carried, uint256 toContributors, uint256 toValidators) = _logged();
            if (ledgerNow < view_.graceEnd || accepted != 0 || !carried || toContributors + toValidators != 0) {
                ++carryOverViolations;
            }
            ++carryOvers;
            _advance(round);
        } catch {}
        _observe();
    }

    function claim(uint256 actorSeed) external {
        address who = actors[_mix(actorSeed) % N_ACTORS];
        uint256 accrued = ledger.account(who).accrued;
        uint256 balance = token.balanceOf(who);
        vm.prank(who);
        try ledger.claimRewards() returns (uint256 amount) {
            ghostClaimed += amount;
            if (amount != accrued || token.balanceOf(who) != balance + amount) ++rewardViolations;
        } catch {}
        _observe();
    }

    /// The admin pauses for a while (when the cooldown allows) and unpauses: every deadline of the live round must
    /// stand where it stood, in ledger time, and nothing may happen in between.
    function pauseForAWhile(uint256 seconds_, uint256 actorSeed) external {
        uint32 round = ghostRound;
        IMeshLedger.RoundView memory before = ledger.roundView(taskId, round);
        try ledger.pause() {
            vm.warp(block.timestamp + bound(seconds_, 1, 5_000));
            this.submit(actorSeed, actorSeed, 1); // must be refused (counted otherwise)
            ledger.unpause();
            IMeshLedger.RoundView memory afterwards = ledger.roundView(taskId, round);
            if (
                afterwards.submissionEnd != before.submissionEnd || afterwards.commitEnd != before.commitEnd
                    || afterwards.revealEnd != before.revealEnd || afterwards.phase != before.phase
            ) ++pauseShifts;
        } catch {}
        _observe();
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 1, 400));
        _observe();
    }

    /// The admin schedules granting or revoking a contributor or validator role of one of the last three actors
    /// (the others keep theirs so that rounds still fill and reach quorum); it executes after the delay.
    function changeRole(uint256 actorSeed, bool validator, bool grant) external {
        address who = actors[N_ACTORS - 1 - actorSeed % 3];
        bytes32 role = validator ? VALIDATOR : CONTRIBUTOR;
        try ledger.scheduleRoleChange(role, who, grant) returns (uint64 at) {
            vm.warp(at);
            try ledger.executeRoleChange(role, who, grant) {
                if (grant && validator) (isValidator[who], everValidator[who]) = (true, true);
                else if (grant) (isContributor[who], everContributor[who]) = (true, true);
                else if (validator) isValidator[who] = false;
                else isContributor[who] = false;
            } catch {
                ledger.cancelRoleChange(role, who, grant); // a role conflict: drop it
            }
        } catch {}
        _observe();
    }

    // ─── ghost bookkeeping ─────────────────────────────────────────────────────────────────────────────────

    function setOf(uint32 round) external view returns (address[] memory) {
        return _set[round];
    }

    function _freezeGhostSet(uint32 round) internal {
        (address[] memory members, uint16[] memory weights,,) = ledger.validatorSet(taskId, round);
        for (uint256 k; k < members.length; ++k) {
            _set[round].push(members[k]);
            _weights[round].push(weights[k]);
            // The set is frozen from the validators holding the role, weighted by their reputation now.
            (, uint32 rep) = ledger.reputation(members[k]);
            if (!isValidator[members[k]] || rep != weights[k]) ++setViolations;
        }
    }

    function _advance(uint32 round) internal {
        (int256[] memory consensus,) = _expectedOutcome(round);
        for (uint256 i; i < consensus.length; ++i) {
            _lastConsensus[_updates[round][i]] = consensus[i] + 10_001;
        }
        ++rounds;
        ghostRound = round + 1;
        _freezeGhostSet(round + 1);
    }

    function _inSet(uint32 round, address who) internal view returns (bool) {
        for (uint256 k; k < _set[round].length; ++k) {
            if (_set[round][k] == who) return true;
        }
        return false;
    }

    function _recordUpdate(address who, uint32 round, uint16 index, uint64 samples, bool paused) internal {
        if (paused) ++actionsWhilePaused;
        if (!isContributor[who]) ++updatesByNonContributors;
        if (updatesBy[round][who] != 0) ++duplicateUpdates;
        if (samples > MAX_SAMPLES) ++samplesAboveMax;
        ++updatesBy[round][who];
        require(index == _updates[round].length, "index out of order");
        _updates[round].push(who);
    }

    /// The consensus of every update from the scores the handler revealed (absent members count 0 with their
    /// frozen weight), and the accepted set: consensus > 0 with at least QUORUM reveals.
    function _expectedOutcome(uint32 round) internal view returns (int256[] memory consensus, uint256 accepted) {
        uint256 n = _updates[round].length;
        address[] storage set = _set[round];
        consensus = new int256[](n);
        uint256 revealCount;
        for (uint256 k; k < set.length; ++k) {
            if (revealed[round][set[k]]) ++revealCount;
        }
        for (uint256 i; i < n; ++i) {
            int256[] memory values = new int256[](set.length);
            for (uint256 k; k < set.length; ++k) {
                if (revealed[round][set[k]]) values[k] = _scores[round][set[k]][i];
            }
            consensus[i] = Consensus.lowerWeightedMedian(values, _weights[round]);
            if (revealCount >= QUORUM && consensus[i] > 0) accepted |= uint256(1) << i;
        }
    }

    /// Each side is paid at most its share, less rounding dust under one base unit per payee, and nothing when
    /// nobody on it earned anything; the rewards accrue.
    function _checkRewards(
        uint32 round,
        int256[] memory consensus,
        uint256 accepted,
        uint256 toContributors,
        uint256 toValidators
    ) internal {
        ghostAccrued += toContributors + toValidators;
        uint256 validatorShare = uint256(BUDGET) * 1_000 / 10_000;
        if (!_withinShare(toContributors, BUDGET - validatorShare, _popcount(accepted))) ++rewardViolations;
        if (!_withinShare(toValidators, validatorShare, _agreeingValidators(round, consensus))) ++rewardViolations;
    }

    function _withinShare(uint256 paid, uint256 share, uint256 payees) internal pure returns (bool) {
        if (payees == 0) return paid == 0;
        return paid <= share && paid + payees > share;
    }

    /// Members that revealed with an agreement above 0 against the round's tolerance (R5), and none below the
    /// quorum (nobody is paid then).
    function _agreeingValidators(uint32 round, int256[] memory consensus) internal view returns (uint256 count) {
        uint256 n = consensus.length;
        address[] storage set = _set[round];
        uint256[] memory distance = new uint256[](set.length);
        uint256 mask;
        uint256 revealCount;
        for (uint256 k; k < set.length; ++k) {
            address who = set[k];
            if (!revealed[round][who]) continue;
            mask |= uint256(1) << k;
            ++revealCount;
            uint256 sum;
            for (uint256 i; i < n; ++i) {
                sum += Consensus.cappedDistance(_scores[round][who][i], consensus[i]);
            }
            distance[k] = n == 0 ? 0 : sum / n;
        }
        if (revealCount < QUORUM) return 0;
        uint256 tol = Consensus.tolerance(distance, _weights[round], mask);
        if (n != 0) {
            // Pay against min(r, the public record's distance): the contributors' last consensus (0 if none).
            uint256 record;
            for (uint256 i; i < n; ++i) {
                int256 last = _lastConsensus[_updates[round][i]];
                record += Consensus.cappedDistance(last == 0 ? int256(0) : last - 10_001, consensus[i]);
            }
            if (record / n < tol) tol = record / n;
        }
        for (uint256 k; k < set.length; ++k) {
            if ((mask >> k) & 1 != 0 && Consensus.agreement(distance[k], tol) > 0) ++count;
        }
    }

    function _logged()
        internal
        returns (uint256 accepted, bool carried, uint256 toContributors, uint256 toValidators)
    {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(ledger) || logs[i].topics[0] != IMeshLedger.RoundFinalized.selector) {
                continue;
            }
            IMeshLedger.Settlement[] memory s;
            (, accepted,,, carried, s) =
                abi.decode(logs[i].data, (bytes32, uint256, uint8, uint32, bool, IMeshLedger.Settlement[]));
            for (uint256 k; k < s.length; ++k) {
                if (s[k].role == IMeshLedger.Role.Contributor) toContributors += s[k].reward;
                else toValidators += s[k].reward;
            }
        }
    }

    function _commitment(uint32 round, address who, int256[] memory scores) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                block.chainid,
                address(ledger),
                taskId,
                round,
                who,
                keccak256(_encode(scores)),
                keccak256(_reasonsFor(scores)),
                SALT
            )
        );
    }

    function _encode(int256[] memory scores) internal pure returns (bytes memory out) {
        out = new bytes(2 * scores.length);
        for (uint256 i; i < scores.length; ++i) {
            uint16 word = uint16(int16(scores[i]));
            out[2 * i] = bytes1(uint8(word >> 8));
            out[2 * i + 1] = bytes1(uint8(word));
        }
    }

    function _reasonsFor(int256[] memory scores) internal pure returns (bytes memory out) {
        out = new bytes(scores.length);
        for (uint256 i; i < scores.length; ++i) {
            out[i] = bytes1(scores[i] == -10_000 ? uint8(15) : uint8(0));
        }
    }

    /// Moves wall time forward until the ledger clock reads `ledgerTime` (no-op when it already does).
    function _warpToLedger(uint64 ledgerTime) internal {
        (uint64 ledgerNow,,) = ledger.clock();
        if (ledgerNow < ledgerTime) vm.warp(block.timestamp + (ledgerTime - ledgerNow));
    }

    /// Mostly a current holder of the role (contributor or validator), otherwise any actor at all.
    function _pick(uint256 seed, bool contributor) internal view returns (address) {
        seed = _mix(seed);
        if (seed % 8 != 0) {
            uint256 holders;
            for (uint256 a; a < N_ACTORS; ++a) {
                if (contributor ? isContributor[actors[a]] : isValidator[actors[a]]) ++holders;
            }
            if (holders != 0) {
                uint256 k = (seed >> 8) % holders;
                for (uint256 a; a < N_ACTORS; ++a) {
                    if (!(contributor ? isContributor[actors[a]] : isValidator[actors[a]])) continue;
                    if (k == 0) return actors[a];
                    --k;
                }
            }
        }
        return actors[(seed >> 16) % N_ACTORS];
    }

    /// Fuzzer seeds are often small numbers: hash one before carving several choices out of its bits.
    function _mix(uint256 seed) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed)));
    }

    function _indexOf(address who) internal view returns (uint256) {
        for (uint256 a; a < N_ACTORS; ++a) {
            if (actors[a] == who) return a;
        }
        revert("not an actor");
    }

    function _popcount(uint256 x) internal pure returns (uint256 count) {
        for (; x != 0; x &= x - 1) {
            ++count;
        }
    }

    /// Rounds only move forward, and within a round the phase only moves forward.
    function _observe() internal {
        uint32 round = ledger.currentRound(taskId);
        uint8 phase = uint8(ledger.roundView(taskId, round).phase);
        if (round != ghostRound || round < _lastRound || (round == _lastRound && phase < _lastPhase)) {
            ++backwardSteps;
        }
        _lastRound = round;
        _lastPhase = phase;
    }
}
