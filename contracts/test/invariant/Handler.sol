// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MeshLedger} from "../../src/MeshLedger.sol";
import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {CheatCodes} from "../utils/Test.sol";
import {Vm} from "../utils/Vm.sol";

/// @notice Drives one task of a small consortium through random sequences of submissions (direct and relayed),
/// votes (single and batched), finalizations (sometimes with a wrong accepted set), role changes and time.
/// Every call the ledger accepts is mirrored in ghost state; the counters of "impossible" events (an update
/// by a non-contributor, a second vote, an accepted set other than the quorum outcome…) must stay zero.
/// Actors include non-members and members acting out of turn, so that a missing check would be exercised.
contract LedgerHandler is CheatCodes {
    bytes32 internal constant CONTRIBUTOR = keccak256("CONTRIBUTOR_ROLE");
    bytes32 internal constant VALIDATOR = keccak256("VALIDATOR_ROLE");
    uint256 internal constant N_ACTORS = 10;
    uint16 public constant QUORUM = 2;
    uint128 public constant BUDGET = 1_000 ether;

    MeshLedger public immutable ledger;
    MeshToken public immutable token;
    address public immutable admin;
    address public immutable aggregator;
    uint256 public immutable taskId;

    address[] public actors;
    uint256[] internal keys;

    // ─── ghost roles (kept by this handler, which is the only one granting and revoking) ───
    mapping(address => bool) public isContributor;
    mapping(address => bool) public isValidator;
    mapping(address => bool) public everContributor;
    mapping(address => bool) public everValidator;

    // ─── ghost history ───
    uint32 public ghostRound = 1;
    mapping(uint32 round => address[]) internal _updates;
    mapping(uint32 round => mapping(address => uint256)) public updatesBy;
    mapping(uint32 round => mapping(address => mapping(uint256 index => uint256))) public votesOn;
    mapping(uint32 round => mapping(address => uint256)) public acceptBits;

    uint256 public ghostRewards;
    uint256 public rounds;
    uint256 public acceptedUpdates;
    uint256 public successfulVotes;

    // ─── violations: each must stay zero ───
    uint256 public updatesByNonContributors;
    uint256 public duplicateUpdates;
    uint256 public votesByNonValidators;
    uint256 public duplicateVotes;
    uint256 public outcomeMismatches;
    uint256 public honestRefusals;
    uint256 public rewardViolations;
    uint256 public backwardSteps;

    uint32 internal _lastRound = 1;
    uint8 internal _lastPhase;

    constructor() {
        vm.warp(1_700_000_000);
        admin = address(this);
        aggregator = address(0xA66);
        token = new MeshToken();
        ledger = new MeshLedger(admin, token);
        token.setMinter(address(ledger));
        ledger.grantRole(keccak256("AGGREGATOR_ROLE"), aggregator);
        for (uint256 i; i < N_ACTORS; ++i) {
            uint256 key = 0xAC7000 + i;
            keys.push(key);
            actors.push(vm.addr(key));
        }
        // Actors 0-5 contributors, 6-8 validators, 9 a stranger; role changes reshuffle them over time.
        for (uint256 i; i < 6; ++i) {
            _setRole(actors[i], CONTRIBUTOR, true);
        }
        for (uint256 i = 6; i < 9; ++i) {
            _setRole(actors[i], VALIDATOR, true);
        }
        taskId = ledger.createTask(
            IMeshLedger.TaskParams({
                specDigest: keccak256("spec"),
                genesisDigest: keccak256("genesis"),
                rule: 0,
                ruleParam: 0,
                quorum: QUORUM,
                submissionWindow: 1_000,
                voteWindow: 1_000,
                rewardPerRound: BUDGET
            })
        );
        _lastPhase = uint8(IMeshLedger.Phase.Open);
    }

    function actorCount() external pure returns (uint256) {
        return N_ACTORS;
    }

    function updatesIn(uint32 round) external view returns (uint256) {
        return _updates[round].length;
    }

    // ─── actions ───────────────────────────────────────────────────────────────────────────────────────────

    function submit(uint256 actorSeed, uint256 digestSeed, uint64 samples) external {
        address who = _pick(actorSeed, true);
        uint32 round = ghostRound;
        bytes32 digest = keccak256(abi.encode(digestSeed, round));
        samples = uint64(bound(samples, 1, 1e9));
        vm.prank(who);
        try ledger.submitUpdate(taskId, round, digest, samples) returns (uint16 index) {
            _recordUpdate(who, round, index);
        } catch {}
        _observe();
    }

    function submitRelayed(uint256 actorSeed, uint256 digestSeed, uint64 samples, uint8 nonceSkew) external {
        address who = _pick(actorSeed, true);
        uint256 a = _indexOf(who);
        uint32 round = ghostRound;
        bytes32 digest = keccak256(abi.encode(digestSeed, round, "relayed"));
        samples = uint64(bound(samples, 1, 1e9));
        uint64 nonce = ledger.nonces(who) + (_mix(nonceSkew) % 5 == 0 ? 1 : 0); // sometimes a wrong nonce
        uint64 deadline = uint64(block.timestamp + 500);
        bytes32 hash = ledger.hashSubmission(taskId, round, digest, samples, nonce, deadline);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[a], hash);
        IMeshLedger.SignedSubmission memory sub =
            IMeshLedger.SignedSubmission(who, digest, samples, nonce, deadline, v, r, s);
        try ledger.submitUpdateFor(taskId, round, sub) returns (uint16 index) {
            _recordUpdate(who, round, index);
        } catch {}
        _observe();
    }

    function vote(uint256 actorSeed, uint256 indexSeed, uint8 reasonSeed) external {
        address who = _pick(actorSeed, false);
        uint32 round = ghostRound;
        uint256 n = _updates[round].length;
        indexSeed = _mix(indexSeed);
        bool accept = (indexSeed >> 64) % 4 != 0; // mostly accepts, so that rounds accept updates
        // Usually an existing update (often one this validator already voted on), now and then the next index.
        uint16 index = uint16(indexSeed % 8 == 0 || n == 0 ? n : (indexSeed >> 8) % n);
        uint8 reason = accept ? 0 : uint8(bound(reasonSeed, 1, 19));
        vm.prank(who);
        try ledger.vote(taskId, round, index, accept, reason) {
            _recordVote(who, round, index, accept);
        } catch {}
        _observe();
    }

    function voteBatch(uint256 actorSeed, uint256 indexesSeed, uint256 acceptsSeed) external {
        address who = _pick(actorSeed, false);
        uint32 round = ghostRound;
        uint256 n = _updates[round].length;
        indexesSeed = _mix(indexesSeed);
        acceptsSeed = _mix(acceptsSeed);
        // Half the time exactly the updates this validator has not voted on yet (completing its ballot), else a
        // random set of known updates (often repeating a vote); now and then also the index after the last one.
        uint256 width = indexesSeed % 4 == 0 ? n + 1 : n;
        uint256 indexes = (indexesSeed >> 8) % 2 == 0 ? ~_votedBits(round, who) : indexesSeed >> 16;
        indexes &= (uint256(1) << width) - 1;
        uint256 accepts = (acceptsSeed | (acceptsSeed >> 128)) & indexes; // about three accepts in four
        bytes memory reasons;
        for (uint256 i; i < width; ++i) {
            if ((indexes >> i) & 1 == 0) continue;
            reasons = bytes.concat(reasons, bytes1((accepts >> i) & 1 == 1 ? 0 : 15));
        }
        vm.prank(who);
        try ledger.voteBatch(taskId, round, indexes, accepts, reasons) {
            for (uint256 i; i < width; ++i) {
                if ((indexes >> i) & 1 == 1) _recordVote(who, round, uint16(i), (accepts >> i) & 1 == 1);
            }
        } catch {}
        _observe();
    }

    /// Every validator holding the role completes its ballot on the live round, accepting about three updates
    /// in four, but only one in four of actor 0's (a poor contributor whose reputation keeps falling).
    function voteAll(uint256 acceptsSeed) external {
        uint32 round = ghostRound;
        uint256 n = _updates[round].length;
        for (uint256 a; a < N_ACTORS; ++a) {
            address who = actors[a];
            if (!isValidator[who]) continue;
            uint256 indexes = ~_votedBits(round, who) & ((uint256(1) << n) - 1);
            if (indexes == 0) continue;
            uint256 mixed = uint256(keccak256(abi.encode(acceptsSeed, a)));
            uint256 accepts = (mixed | (mixed >> 128)) & indexes;
            for (uint256 i; i < n; ++i) {
                if (_updates[round][i] == actors[0] && (mixed >> (64 + 2 * i)) % 4 != 0) accepts &= ~(uint256(1) << i);
            }
            bytes memory reasons;
            for (uint256 i; i < n; ++i) {
                if ((indexes >> i) & 1 == 1) reasons = bytes.concat(reasons, bytes1((accepts >> i) & 1 == 1 ? 0 : 16));
            }
            vm.prank(who);
            try ledger.voteBatch(taskId, round, indexes, accepts, reasons) {
                for (uint256 i; i < n; ++i) {
                    if ((indexes >> i) & 1 == 1) _recordVote(who, round, uint16(i), (accepts >> i) & 1 == 1);
                }
            } catch {}
        }
        _observe();
    }

    /// Finalizes the live round: one time in four it first waits out the vote window when the round is not yet
    /// finalizable (more often, and rounds would rarely collect votes). Usually it names the quorum outcome of the ghost votes, sometimes another accepted set. An
    /// honest finalization of a finalizable round must succeed; one with another set must not.
    function finalize(uint256 seed) external {
        seed = _mix(seed);
        uint32 round = ghostRound;
        IMeshLedger.RoundView memory view_ = ledger.roundView(taskId, round);
        if (!view_.finalizable && seed % 4 == 0) {
            vm.warp(view_.voteEnd);
            view_.finalizable = true;
        }
        uint256 n = _updates[round].length;
        uint256 expected = _expectedOutcome(round, n);
        uint256 given = expected;
        if ((seed >> 8) % 4 == 0) given = n == 0 ? 1 : expected ^ (uint256(1) << ((seed >> 16) % n));
        bytes32 aggregate = given == 0 ? ledger.baseDigest(taskId, round) : keccak256(abi.encode("aggregate", round));
        vm.recordLogs();
        vm.prank(aggregator);
        try ledger.finalizeRound(taskId, round, aggregate, given) {
            if (given != expected) ++outcomeMismatches;
            _checkRewards(round, n, expected);
            ++ghostRound;
            ++rounds;
            acceptedUpdates += _popcount(expected);
        } catch {
            if (given == expected && view_.finalizable) ++honestRefusals;
        }
        _observe();
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 1, 250));
        _observe();
    }

    /// The admin grants or revokes a contributor or validator role of one of the last three actors (the others
    /// keep their roles so that rounds still fill and reach quorum); the conflict rule may refuse a grant.
    function changeRole(uint256 actorSeed, bool validator, bool grant) external {
        address who = actors[N_ACTORS - 1 - actorSeed % 3];
        _setRole(who, validator ? VALIDATOR : CONTRIBUTOR, grant);
        _observe();
    }

    // ─── ghost bookkeeping ─────────────────────────────────────────────────────────────────────────────────

    function _setRole(address who, bytes32 role, bool grant) internal {
        if (grant) {
            try ledger.grantRole(role, who) {
                if (role == CONTRIBUTOR) (isContributor[who], everContributor[who]) = (true, true);
                else (isValidator[who], everValidator[who]) = (true, true);
            } catch {}
        } else {
            ledger.revokeRole(role, who);
            if (role == CONTRIBUTOR) isContributor[who] = false;
            else isValidator[who] = false;
        }
    }

    function _recordUpdate(address who, uint32 round, uint16 index) internal {
        if (!isContributor[who]) ++updatesByNonContributors;
        if (updatesBy[round][who] != 0) ++duplicateUpdates;
        ++updatesBy[round][who];
        require(index == _updates[round].length, "index out of order");
        _updates[round].push(who);
    }

    function _votedBits(uint32 round, address who) internal view returns (uint256 bits) {
        for (uint256 i; i < _updates[round].length; ++i) {
            if (votesOn[round][who][i] != 0) bits |= uint256(1) << i;
        }
    }

    function _recordVote(address who, uint32 round, uint16 index, bool accept) internal {
        ++successfulVotes;
        if (!isValidator[who]) ++votesByNonValidators;
        if (votesOn[round][who][index] != 0) ++duplicateVotes;
        ++votesOn[round][who][index];
        if (accept) acceptBits[round][who] |= uint256(1) << index;
    }

    /// Update i is accepted iff at least QUORUM validators that still hold the role accepted it.
    function _expectedOutcome(uint32 round, uint256 n) internal view returns (uint256 outcome) {
        for (uint256 i; i < n; ++i) {
            uint256 count;
            for (uint256 a; a < N_ACTORS; ++a) {
                address who = actors[a];
                if (isValidator[who] && (acceptBits[round][who] >> i) & 1 == 1) ++count;
            }
            if (count >= QUORUM) outcome |= uint256(1) << i;
        }
    }

    /// The settlement logged by the finalization just made must pay each side its share of the budget, less
    /// rounding dust (under one base unit per payee), and nothing to a side nobody on it earned.
    function _checkRewards(uint32 round, uint256 n, uint256 outcome) internal {
        (uint256 toContributors, uint256 toValidators) = _rewardsLogged();
        ghostRewards += toContributors + toValidators;
        uint256 validatorShare = uint256(BUDGET) * 1_000 / 10_000;
        uint256 accepted = _popcount(outcome);
        uint256 eligible = _eligibleValidators(round, n, outcome);
        if (!_withinShare(toContributors, BUDGET - validatorShare, accepted)) ++rewardViolations;
        if (!_withinShare(toValidators, validatorShare, eligible)) ++rewardViolations;
    }

    function _withinShare(uint256 paid, uint256 share, uint256 payees) internal pure returns (bool) {
        if (payees == 0) return paid == 0;
        return paid <= share && paid + payees > share;
    }

    /// Validators holding the role that voted on every update of the round, each time with the outcome.
    function _eligibleValidators(uint32 round, uint256 n, uint256 outcome) internal view returns (uint256 count) {
        if (n == 0) return 0;
        for (uint256 a; a < N_ACTORS; ++a) {
            address who = actors[a];
            if (!isValidator[who]) continue;
            bool ok = true;
            for (uint256 i; i < n && ok; ++i) {
                ok = votesOn[round][who][i] != 0 && ((acceptBits[round][who] >> i) & 1) == ((outcome >> i) & 1);
            }
            if (ok) ++count;
        }
    }

    function _rewardsLogged() internal returns (uint256 toContributors, uint256 toValidators) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(ledger) || logs[i].topics[0] != IMeshLedger.RoundFinalized.selector) {
                continue;
            }
            (,,,, IMeshLedger.Settlement[] memory s) =
                abi.decode(logs[i].data, (bytes32, uint256, uint8, uint32, IMeshLedger.Settlement[]));
            for (uint256 k; k < s.length; ++k) {
                if (s[k].role == IMeshLedger.Role.Contributor) toContributors += s[k].reward;
                else toValidators += s[k].reward;
            }
        }
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
