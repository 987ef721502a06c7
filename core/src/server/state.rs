//! What the balancer and the stick table need to know about one server right now.
//!
//! Two independent axes, as in HAProxy: the *admin* state an operator sets (ready, drain,
//! maintenance) and the *operational* state health checks drive (up, down). A server takes new
//! balanced connections only when it is up, ready and has a non-zero weight; a stick-table hit
//! may still use a draining server, never one in maintenance or down.

use serde::{Deserialize, Serialize};

use super::health::Transition;

/// Largest configurable weight (HAProxy: `weight` 0..=256).
pub const MAX_WEIGHT: u32 = 256;

/// A full weight, in thousandths ([`ServerState::ramp`]).
pub const FULL_RAMP: u16 = 1000;

/// The state an operator puts a server in (stats page, admin API, config).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    /// Takes balanced and sticky traffic.
    #[default]
    Ready,
    /// Takes no new balanced traffic, but stick-table hits still land on it so that existing
    /// clients finish their sessions (HAProxy DRAIN).
    Drain,
    /// Takes nothing new at all (HAProxy MAINT).
    Maint,
}

/// The state health checking says a server is in.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperState {
    /// Reachable; HAProxy starts every server UP until a check says otherwise.
    #[default]
    Up,
    /// Failed its checks; no new connections.
    Down,
}

/// One server as the balancer sees it: a snapshot the daemon or the simulator keeps current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// Name from the configuration; the consistent-hash ring is keyed on it so that a server keeps
    /// its keys across reloads that reorder the list.
    pub name: String,
    /// Operator state.
    pub admin: AdminState,
    /// Health state.
    pub oper: OperState,
    /// Relative share of balanced traffic, 0..=[`MAX_WEIGHT`]; 0 takes no balanced traffic.
    pub weight: u32,
    /// Backup servers take traffic only when no non-backup server is usable.
    pub backup: bool,
    /// Connections currently open to this server (leastconn, first, bounded-load hashing).
    pub active_conns: u32,
    /// Connection slots; 0 means unlimited. A full server is passed over while another can take
    /// the connection.
    pub maxconn: u32,
    /// The share of its weight the server gets while `slowstart` ramps it up, in thousandths
    /// ([`FULL_RAMP`] once it is done or without slowstart).
    pub ramp: u16,
    /// HAProxy's "MAINT (resolution)": the server's host name has no address (`init-addr
    /// none` before DNS answered, or DNS errors beyond the `hold` period). Takes nothing,
    /// whatever the operator's state.
    pub resolution_maint: bool,
}

impl ServerState {
    /// A ready, up, non-backup server with the given weight, no connections and no limit.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        ServerState {
            name: name.into(),
            admin: AdminState::Ready,
            oper: OperState::Up,
            weight: weight.min(MAX_WEIGHT),
            backup: false,
            active_conns: 0,
            maxconn: 0,
            ramp: FULL_RAMP,
            resolution_maint: false,
        }
    }

    /// May the balancer send a new connection here? Up, ready and weight > 0.
    pub fn usable_for_balance(&self) -> bool {
        self.oper == OperState::Up
            && self.admin == AdminState::Ready
            && self.weight > 0
            && !self.resolution_maint
    }

    /// May a stick-table hit send a connection here? Up and not in maintenance: DRAIN is honoured
    /// for sticky hits, as in HAProxy.
    pub fn usable_for_sticky(&self) -> bool {
        self.oper == OperState::Up && self.admin != AdminState::Maint && !self.resolution_maint
    }

    /// Has the server used all its connection slots?
    pub fn is_full(&self) -> bool {
        self.maxconn != 0 && self.active_conns >= self.maxconn
    }

    /// The weight the balancer uses: clamped to [`MAX_WEIGHT`], 0 when not usable, and while
    /// slowstart ramps the server up its share of it (at least 1, rounded up as HAProxy does).
    pub fn effective_weight(&self) -> u32 {
        if !self.usable_for_balance() {
            return 0;
        }
        let w = self.weight.min(MAX_WEIGHT);
        if self.ramp >= FULL_RAMP {
            return w;
        }
        (w * u32::from(self.ramp))
            .div_ceil(u32::from(FULL_RAMP))
            .max(1)
    }

    /// Apply a health transition reported by [`super::Health`].
    pub fn apply(&mut self, transition: Transition) {
        self.oper = match transition {
            Transition::Up => OperState::Up,
            Transition::Down => OperState::Down,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_is_sticky_but_not_balanced() {
        let mut s = ServerState::new("a", 1);
        assert!(s.usable_for_balance() && s.usable_for_sticky());
        s.admin = AdminState::Drain;
        assert!(!s.usable_for_balance());
        assert!(s.usable_for_sticky());
        s.admin = AdminState::Maint;
        assert!(!s.usable_for_sticky());
    }

    #[test]
    fn a_server_without_an_address_takes_nothing() {
        let mut s = ServerState::new("a", 1);
        s.resolution_maint = true;
        assert!(!s.usable_for_balance() && !s.usable_for_sticky());
    }

    #[test]
    fn down_or_zero_weight_is_not_balanced() {
        let mut s = ServerState::new("a", 0);
        assert!(!s.usable_for_balance());
        assert!(s.usable_for_sticky(), "weight 0 still honours stickiness");
        s.weight = 3;
        s.apply(Transition::Down);
        assert!(!s.usable_for_balance() && !s.usable_for_sticky());
        s.apply(Transition::Up);
        assert!(s.usable_for_balance());
    }

    #[test]
    fn weight_is_clamped_and_full_respects_unlimited() {
        let mut s = ServerState::new("a", 1000);
        assert_eq!(s.weight, MAX_WEIGHT);
        s.active_conns = 10_000;
        assert!(!s.is_full());
        s.maxconn = 10_000;
        assert!(s.is_full());
    }

    proptest::proptest! {
        /// While slowstart ramps a usable server, its weight is at least 1, at most its full
        /// weight, grows with the ramp, and is the full weight once the ramp is done.
        #[test]
        fn a_ramping_weight_is_between_one_and_full_and_grows(
            weight in 1u32..=MAX_WEIGHT,
            a in 0u16..=FULL_RAMP,
            b in 0u16..=FULL_RAMP,
        ) {
            let mut s = ServerState::new("a", weight);
            let full = s.effective_weight();
            let at = |s: &mut ServerState, r: u16| { s.ramp = r; s.effective_weight() };
            let (lo, hi) = (a.min(b), a.max(b));
            let (wlo, whi) = (at(&mut s, lo), at(&mut s, hi));
            proptest::prop_assert!(wlo >= 1 && wlo <= whi && whi <= full);
            proptest::prop_assert_eq!(at(&mut s, FULL_RAMP), full);
            s.apply(Transition::Down);
            proptest::prop_assert_eq!(at(&mut s, lo), 0);
        }
    }
}
