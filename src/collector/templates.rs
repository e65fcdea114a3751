//! The template table: (Transport Session, Observation Domain, Template ID) -> compiled
//! program, with the lifetimes and withdrawals of RFC 7011 §8.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowvm_vm::Program;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};

use crate::collector::FastMap;
use crate::collector::session::TransportSession;

//= https://www.rfc-editor.org/rfc/rfc7011#section-8
//# Different Observation Domains within a Transport Session MAY use the
//# same Template ID value to refer to different Templates; Collecting
//# Processes MUST properly handle this case.
/// Where a template lives: templates of different sessions or domains never mix (§8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateKey {
    /// The Transport Session it arrived on.
    pub session: TransportSession,
    /// The Observation Domain of the Message that carried it.
    pub domain: ObservationDomainId,
    /// Its Template ID.
    pub template_id: TemplateId,
}

/// A template as the collector holds it.
#[derive(Clone, Debug)]
pub enum TemplateState {
    /// Compiled and ready for Data Sets.
    Ready(Arc<Program>),
    /// Refused; its Data Sets are counted as `template_rejected`. `options` says which Set
    /// type defined it, for All Template Withdrawals.
    Rejected {
        /// Whether it came in an Options Template Set.
        options: bool,
    },
}

impl TemplateState {
    /// What holding it costs, in instructions (about one per Field Specifier, each with its
    /// column's schema entry): a program weighs up to a megabyte, so counting templates alone
    /// does not bound memory.
    pub fn weight(&self) -> usize {
        match self {
            Self::Ready(p) => p.ops().len().max(1),
            Self::Rejected { .. } => 1,
        }
    }

    fn is_options(&self) -> bool {
        match self {
            Self::Ready(p) => p.scope_field_count() > 0,
            Self::Rejected { options } => *options,
        }
    }
}

#[derive(Debug)]
struct Entry {
    state: TemplateState,
    refreshed: Instant,
}

/// The templates of one Transport Session, by Observation Domain and Template ID.
#[derive(Debug)]
struct SessionTemplates {
    session: TransportSession,
    map: FastMap<(ObservationDomainId, TemplateId), Entry>,
}

/// Where a Transport Session's templates are in the table: found by hashing the session once
/// per Message, so that each of its Sets finds its template by domain and ID alone.
///
/// A slot stays valid until the table next forgets a session ([`TemplateStore::expire`],
/// [`TemplateStore::remove_session`]); a stale one finds nothing, never another session's
/// templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSlot {
    index: usize,
    /// The table's [`TemplateStore::generation`] when the slot was found.
    generation: u64,
}

/// What one exporter address holds.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    templates: usize,
    weight: usize,
}

/// The table is full: the template was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// Bounds and lifetimes of the template table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Templates over all sessions.
    pub max_templates: usize,
    /// Templates of one Transport Session (and all its domains).
    pub max_per_session: usize,
    /// Templates of one exporter address over all its sessions: over UDP every source port is
    /// a session of its own, so without this one address could fill the whole table.
    pub max_per_exporter: usize,
    /// Total [`TemplateState::weight`] over all templates.
    pub max_weight: usize,
    /// Total weight of one exporter address's templates.
    pub max_weight_per_exporter: usize,
    /// UDP template lifetime (§8.4): a template not refreshed for this long is forgotten.
    pub lifetime: Duration,
}

/// All templates the collector knows: a table per Transport Session, the sessions found by
/// [`slot`](Self::slot).
#[derive(Debug)]
pub struct TemplateStore {
    /// Each session's place in `sessions`.
    index: FastMap<TransportSession, usize>,
    /// Sessions that installed a template. One left empty by withdrawals stays until the next
    /// `expire` (or its `remove_session`), so slots found for a Message stay valid through it.
    sessions: Vec<SessionTemplates>,
    /// Bumped whenever a session leaves `sessions`, which moves another into its place.
    generation: u64,
    per_exporter: FastMap<Option<IpAddr>, Usage>,
    /// Templates held, over all sessions.
    len: usize,
    weight: usize,
    limits: TemplateLimits,
}

impl TemplateStore {
    /// An empty table.
    pub fn new(limits: TemplateLimits) -> Self {
        Self {
            index: FastMap::default(),
            sessions: Vec::new(),
            generation: 0,
            per_exporter: FastMap::default(),
            len: 0,
            weight: 0,
            limits,
        }
    }

    /// Templates held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no template is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `session` holds any template.
    pub fn has_session(&self, session: TransportSession) -> bool {
        self.templates(session).is_some_and(|t| !t.map.is_empty())
    }

    fn templates(&self, session: TransportSession) -> Option<&SessionTemplates> {
        self.sessions.get(*self.index.get(&session)?)
    }

    fn templates_mut(&mut self, session: TransportSession) -> Option<&mut SessionTemplates> {
        self.sessions.get_mut(*self.index.get(&session)?)
    }

    /// Where `session`'s templates are; `None` before it installs one.
    pub fn slot(&self, session: TransportSession) -> Option<SessionSlot> {
        self.index.get(&session).map(|&index| SessionSlot {
            index,
            generation: self.generation,
        })
    }

    fn templates_of(&self, slot: SessionSlot) -> Option<&SessionTemplates> {
        if slot.generation != self.generation {
            return None;
        }
        self.sessions.get(slot.index)
    }

    /// The template `template_id` of `domain` in the session at `slot`.
    pub fn get_in(
        &self,
        slot: SessionSlot,
        domain: ObservationDomainId,
        template_id: TemplateId,
    ) -> Option<&TemplateState> {
        self.templates_of(slot)?
            .map
            .get(&(domain, template_id))
            .map(|e| &e.state)
    }

    /// The template at `key`.
    pub fn get(&self, key: &TemplateKey) -> Option<&TemplateState> {
        self.get_in(self.slot(key.session)?, key.domain, key.template_id)
    }

    fn entry_mut(&mut self, key: &TemplateKey) -> Option<&mut Entry> {
        self.templates_mut(key.session)?
            .map
            .get_mut(&(key.domain, key.template_id))
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-8.4
    //# The Collecting Process MUST replace the Template or Options
    //# Template for that Template ID with the newly received Template or
    //# Options Template.  This is the normal operation of Template ID reuse
    //# over UDP.
    /// Installs (or redefines, or refreshes) the template at `key`.
    ///
    /// # Errors
    /// [`TableFull`] when a new key would pass a bound (templates in all, per session, per
    /// exporter address; weight in all, per exporter address). A redefinition past a weight
    /// bound removes the old definition too: its data must not be decoded with a layout the
    /// exporter has replaced.
    pub fn install(
        &mut self,
        key: TemplateKey,
        state: TemplateState,
        now: Instant,
    ) -> Result<(), TableFull> {
        let exporter = key.session.exporter_ip();
        let old_weight = self.get(&key).map(TemplateState::weight);
        let usage = self
            .per_exporter
            .get(&exporter)
            .copied()
            .unwrap_or_default();
        let weight = state.weight();
        let (total, of_exporter) = match old_weight {
            Some(old) => (self.weight - old, usage.weight - old),
            None => (self.weight, usage.weight),
        };
        let heavy = weight > self.limits.max_weight.saturating_sub(total)
            || weight
                > self
                    .limits
                    .max_weight_per_exporter
                    .saturating_sub(of_exporter);
        if let Some(old) = old_weight {
            if heavy {
                self.withdraw(&key);
                return Err(TableFull);
            }
            if let Some(entry) = self.entry_mut(&key) {
                *entry = Entry {
                    state,
                    refreshed: now,
                };
            }
            self.account(exporter, 0, weight, old);
            return Ok(());
        }
        let in_session = self.templates(key.session).map_or(0, |t| t.map.len());
        if heavy
            || self.len >= self.limits.max_templates
            || in_session >= self.limits.max_per_session
            || usage.templates >= self.limits.max_per_exporter
        {
            return Err(TableFull);
        }
        let index = *self.index.entry(key.session).or_insert_with(|| {
            self.sessions.push(SessionTemplates {
                session: key.session,
                map: FastMap::default(),
            });
            self.sessions.len() - 1
        });
        if let Some(templates) = self.sessions.get_mut(index) {
            templates.map.insert(
                (key.domain, key.template_id),
                Entry {
                    state,
                    refreshed: now,
                },
            );
            self.len += 1;
            self.account(exporter, 1, weight, 0);
        }
        Ok(())
    }

    /// Adds `added` templates and `weight`, less `freed` weight, to `exporter`'s usage.
    fn account(&mut self, exporter: Option<IpAddr>, added: usize, weight: usize, freed: usize) {
        self.weight = self.weight + weight - freed;
        let usage = self.per_exporter.entry(exporter).or_default();
        usage.templates += added;
        usage.weight = usage.weight + weight - freed;
    }

    /// Accounts `n` templates of `session` weighing `weight` as gone.
    fn removed(&mut self, session: TransportSession, n: usize, weight: usize) {
        self.len = self.len.saturating_sub(n);
        self.weight = self.weight.saturating_sub(weight);
        let exporter = session.exporter_ip();
        if let Some(usage) = self.per_exporter.get_mut(&exporter) {
            usage.templates = usage.templates.saturating_sub(n);
            usage.weight = usage.weight.saturating_sub(weight);
            if usage.templates == 0 {
                self.per_exporter.remove(&exporter);
            }
        }
    }

    /// Removes the templates of the session at `index` for which `gone` holds; returns how
    /// many. The session stays, emptied or not, so slots found for a Message stay valid.
    fn remove_in(
        &mut self,
        index: usize,
        gone: impl Fn(ObservationDomainId, &Entry) -> bool,
    ) -> usize {
        let Some(templates) = self.sessions.get_mut(index) else {
            return 0;
        };
        let (mut n, mut weight) = (0, 0);
        templates.map.retain(|&(domain, _), e| {
            if !gone(domain, e) {
                return true;
            }
            n += 1;
            weight += e.state.weight();
            false
        });
        let session = templates.session;
        if n > 0 {
            self.removed(session, n, weight);
        }
        n
    }

    /// Forgets the (empty) session at `index`; the last session takes its place.
    fn forget(&mut self, index: usize) {
        let gone = self.sessions.swap_remove(index);
        self.index.remove(&gone.session);
        if let Some(moved) = self.sessions.get(index) {
            self.index.insert(moved.session, index);
        }
        self.generation += 1;
    }

    /// Withdraws one template (§8.1); `false` if it was unknown.
    pub fn withdraw(&mut self, key: &TemplateKey) -> bool {
        let Some(entry) = self
            .templates_mut(key.session)
            .and_then(|t| t.map.remove(&(key.domain, key.template_id)))
        else {
            return false;
        };
        self.removed(key.session, 1, entry.state.weight());
        true
    }

    /// Withdraws every template of `domain` defined by Sets of `set_id` (2 or 3) (§8.1).
    pub fn withdraw_all(
        &mut self,
        session: TransportSession,
        domain: ObservationDomainId,
        set_id: SetId,
    ) -> usize {
        let options = set_id == SetId::OPTIONS_TEMPLATE;
        self.index.get(&session).copied().map_or(0, |index| {
            self.remove_in(index, |d, e| d == domain && e.state.is_options() == options)
        })
    }

    /// Forgets UDP templates not refreshed within the lifetime (§8.4), and sessions left with
    /// no template; returns how many templates. Calling it early or often is harmless.
    pub fn expire(&mut self, now: Instant) -> usize {
        let lifetime = self.limits.lifetime;
        let mut total = 0;
        let mut index = 0;
        while let Some(templates) = self.sessions.get(index) {
            if templates.session.is_udp() {
                total += self.remove_in(index, |_, e| {
                    now.saturating_duration_since(e.refreshed) >= lifetime
                });
            }
            if self.sessions.get(index).is_some_and(|t| t.map.is_empty()) {
                self.forget(index);
            } else {
                index += 1;
            }
        }
        total
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-8
    //# The Collecting Process MUST NOT use Templates from one Transport
    //# Session to decode Data Sets in a subsequent Transport Session.
    /// Forgets every template of a session that ended (a closed TCP connection, §8.1).
    pub fn remove_session(&mut self, session: TransportSession) -> usize {
        let Some(&index) = self.index.get(&session) else {
            return 0;
        };
        let n = self.remove_in(index, |_, _| true);
        self.forget(index);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowvm_vm::Compiler;
    use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};

    fn program(scope: u16) -> Arc<Program> {
        let def = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: scope,
            fields: vec![FieldSpecifier::iana(8, 4)],
        };
        Arc::new(Compiler::default().compile(&def).unwrap())
    }

    fn key(port: u16, id: u16) -> TemplateKey {
        let session = TransportSession::example_udp(port);
        TemplateKey {
            session,
            domain: ObservationDomainId(1),
            template_id: TemplateId(id),
        }
    }

    fn limits() -> TemplateLimits {
        TemplateLimits {
            max_templates: 3,
            max_per_session: 2,
            max_per_exporter: 3,
            max_weight: 1000,
            max_weight_per_exporter: 1000,
            lifetime: Duration::from_secs(1800),
        }
    }

    /// Room for ten templates in all, per session and per exporter.
    fn roomy() -> TemplateLimits {
        TemplateLimits {
            max_templates: 10,
            max_per_session: 10,
            max_per_exporter: 10,
            ..limits()
        }
    }

    #[test]
    fn enforces_both_bounds_but_always_replaces() {
        let mut s = TemplateStore::new(limits());
        let now = crate::clock::now();
        assert_eq!(
            s.install(key(1, 256), TemplateState::Ready(program(0)), now),
            Ok(())
        );
        assert_eq!(
            s.install(key(1, 257), TemplateState::Ready(program(0)), now),
            Ok(())
        );
        assert_eq!(
            s.install(key(1, 258), TemplateState::Ready(program(0)), now),
            Err(TableFull)
        );
        assert_eq!(
            s.install(key(1, 257), TemplateState::Rejected { options: false }, now),
            Ok(())
        );
        assert_eq!(
            s.install(key(2, 256), TemplateState::Ready(program(0)), now),
            Ok(())
        );
        assert_eq!(
            s.install(key(3, 256), TemplateState::Ready(program(0)), now),
            Err(TableFull)
        );
        assert!(s.withdraw(&key(1, 256)));
        assert!(!s.withdraw(&key(1, 256)));
        assert_eq!(
            s.install(key(1, 258), TemplateState::Ready(program(0)), now),
            Ok(())
        );
    }

    #[test]
    fn one_address_cannot_fill_the_table_from_many_ports() {
        let mut s = TemplateStore::new(TemplateLimits {
            max_templates: 10,
            max_per_exporter: 4,
            ..limits()
        });
        let now = crate::clock::now();
        for port in 1..=4 {
            assert_eq!(
                s.install(key(port, 256), TemplateState::Ready(program(0)), now),
                Ok(())
            );
        }
        assert_eq!(
            s.install(key(5, 256), TemplateState::Ready(program(0)), now),
            Err(TableFull)
        );
        let other = TemplateKey {
            session: TransportSession::Udp {
                exporter: ([192, 0, 2, 2], 5).into(),
                collector: ([127, 0, 0, 1], 4739).into(),
            },
            ..key(5, 256)
        };
        assert_eq!(
            s.install(other, TemplateState::Ready(program(0)), now),
            Ok(())
        );
        assert_eq!(s.remove_session(key(1, 0).session), 1);
        assert_eq!(
            s.install(key(5, 256), TemplateState::Ready(program(0)), now),
            Ok(())
        );
    }

    #[test]
    fn heavy_templates_are_bounded_by_weight_and_a_heavy_redefinition_removes_the_old_one() {
        let mut s = TemplateStore::new(TemplateLimits {
            max_templates: 10,
            max_per_session: 10,
            max_per_exporter: 10,
            max_weight: 100,
            max_weight_per_exporter: 100,
            ..limits()
        });
        let now = crate::clock::now();
        let light = TemplateState::Ready(program(0));
        let heavy = TemplateState::Ready(Arc::new(
            Compiler::default()
                .compile(&TemplateDef {
                    template_id: TemplateId(256),
                    scope_field_count: 0,
                    fields: vec![FieldSpecifier::iana(8, 4); 80],
                })
                .unwrap(),
        ));
        let (lw, hw) = (light.weight(), heavy.weight());
        assert!(hw > 80 && lw < 10, "{lw} {hw}");
        assert_eq!(s.install(key(1, 256), heavy.clone(), now), Ok(()));
        assert_eq!(s.install(key(1, 257), heavy.clone(), now), Err(TableFull));
        assert_eq!(s.install(key(1, 257), light.clone(), now), Ok(()));
        assert_eq!(s.install(key(1, 256), light.clone(), now), Ok(()));
        assert_eq!(s.install(key(1, 258), heavy.clone(), now), Ok(()));
        assert_eq!(s.install(key(1, 257), heavy, now), Err(TableFull));
        assert!(s.get(&key(1, 257)).is_none(), "the old layout is gone");
        assert_eq!(s.len(), 2);
        assert_eq!(s.weight, lw + hw);
        assert_eq!(s.remove_session(key(1, 0).session), 2);
        assert_eq!((s.weight, s.per_exporter.len()), (0, 0));
    }

    #[test]
    fn udp_templates_expire_after_their_lifetime() {
        let mut s = TemplateStore::new(limits());
        let t0 = crate::clock::now();
        s.install(key(1, 256), TemplateState::Ready(program(0)), t0)
            .unwrap();
        s.install(
            key(1, 257),
            TemplateState::Ready(program(0)),
            t0 + Duration::from_secs(1000),
        )
        .unwrap();
        assert_eq!(s.expire(t0 + Duration::from_secs(1799)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(1800)), 1);
        assert!(s.get(&key(1, 257)).is_some());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn withdraw_all_takes_only_the_set_type_named() {
        let mut s = TemplateStore::new(roomy());
        let now = crate::clock::now();
        s.install(key(1, 256), TemplateState::Ready(program(0)), now)
            .unwrap();
        s.install(key(1, 257), TemplateState::Ready(program(1)), now)
            .unwrap();
        s.install(key(2, 256), TemplateState::Ready(program(0)), now)
            .unwrap();
        assert_eq!(
            s.withdraw_all(key(1, 0).session, ObservationDomainId(1), SetId::TEMPLATE),
            1
        );
        assert!(s.get(&key(1, 257)).is_some());
        assert!(s.get(&key(2, 256)).is_some());
        assert_eq!(s.remove_session(key(2, 0).session), 1);
    }

    #[test]
    fn a_slot_finds_its_own_session_until_sessions_are_forgotten() {
        let mut s = TemplateStore::new(roomy());
        let t0 = crate::clock::now();
        assert_eq!(s.slot(key(1, 0).session), None);
        s.install(key(1, 256), TemplateState::Ready(program(0)), t0)
            .unwrap();
        let later = t0 + Duration::from_secs(1000);
        s.install(key(2, 257), TemplateState::Ready(program(0)), later)
            .unwrap();
        let one = s.slot(key(1, 0).session).unwrap();
        let two = s.slot(key(2, 0).session).unwrap();
        let domain = ObservationDomainId(1);
        assert!(s.get_in(one, domain, TemplateId(256)).is_some());
        assert!(s.get_in(one, domain, TemplateId(257)).is_none());
        assert!(s.get_in(two, domain, TemplateId(257)).is_some());
        assert!(
            s.get_in(one, ObservationDomainId(2), TemplateId(256))
                .is_none()
        );
        // A withdrawal leaves the session's slot in place (TCP rules, for the test's sake).
        assert!(s.withdraw(&key(1, 256)));
        assert!(!s.has_session(key(1, 0).session));
        assert_eq!(s.slot(key(1, 0).session), Some(one));
        // Expiry forgets the emptied session; session 2 moves into its place, and both old
        // slots go stale rather than find the wrong session's templates.
        assert_eq!(s.expire(t0 + Duration::from_secs(1800)), 0);
        assert_eq!(s.slot(key(1, 0).session), None);
        assert!(s.get_in(one, domain, TemplateId(257)).is_none());
        assert!(s.get_in(two, domain, TemplateId(257)).is_none());
        let moved = s.slot(key(2, 0).session).unwrap();
        assert!(s.get_in(moved, domain, TemplateId(257)).is_some());
        assert_eq!(s.remove_session(key(2, 0).session), 1);
        assert!(s.is_empty());
        assert_eq!((s.weight, s.per_exporter.len()), (0, 0));
    }
}
