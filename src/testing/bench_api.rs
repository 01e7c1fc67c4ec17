//! Access to internals for the benchmarks (hidden from the docs; not a
//! stable API).

use serde::ser::{self, Serialize};

use crate::error::Result;
use crate::format::container;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::tier::ContainerKind;
use crate::tier::SourceTier;

/// A built PHF.
pub struct PhfHandle(Phf);

/// Builds the PHF over every fingerprint of `source`, streaming its index.
pub fn build_phf(source: &dyn SourceTier, gamma: f64, threads: usize) -> Result<PhfHandle> {
    Phf::build_over(source, &|_| true, crate::mark::phf::PhfKind::Boomphf, gamma, threads, &std::env::temp_dir()).map(PhfHandle)
}

/// Builds a PHF of the given kind over every fingerprint of `source`.
pub fn build_phf_kind(source: &dyn SourceTier, kind: crate::mark::phf::PhfKind, threads: usize) -> Result<PhfHandle> {
    Phf::build_over(source, &|_| true, kind, 1.7, threads, &std::env::temp_dir()).map(PhfHandle)
}

impl PhfHandle {
    /// The slot of a key.
    pub fn slot(&self, fp: &Fingerprint) -> Option<u64> {
        self.0.slot(fp)
    }
    /// Keys (= slots).
    pub fn keys(&self) -> u64 {
        self.0.keys
    }
    /// Bytes the function occupies in memory: its arrays at their native
    /// width (counted by serializing through a byte counter).
    pub fn memory_bytes(&self) -> u64 {
        if let Some(b) = self.0.compact_bytes() {
            return b;
        }
        let mut c = Counter(0);
        let _ = self.0.serialize_inner(&mut c);
        c.0
    }
}

/// A PHV.
pub struct PhvHandle(Phv);

impl PhvHandle {
    /// All-zero vector of `slots` bits.
    pub fn new(slots: u64) -> Self {
        PhvHandle(Phv::zeroed(slots))
    }
    /// Sets a bit.
    pub fn set(&mut self, s: u64) {
        self.0.set(s);
    }
    /// Tests a bit.
    pub fn get(&self, s: u64) -> bool {
        self.0.get(s)
    }
    /// Clears a bit.
    pub fn clear(&mut self, s: u64) {
        self.0.clear(s);
    }
    /// Encodes the dirty chunks as a commit would; returns their count.
    pub fn take_dirty(&mut self) -> usize {
        self.0.take_dirty().len()
    }
}

/// Encodes a container of raw segments.
pub fn encode_container(id: u64, segments: &[(Fingerprint, &[u8])]) -> Vec<u8> {
    let stored: Vec<crate::tier::StoredSegment<'_>> =
        segments.iter().map(|(f, b)| crate::tier::StoredSegment::raw(*f, b)).collect();
    container::encode(ContainerId(id), ContainerKind::Data, &stored)
}

/// A serde serializer that only counts bytes, integers at native width.
struct Counter(u64);

#[derive(Debug)]
struct CountErr;
impl std::fmt::Display for CountErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("count error")
    }
}
impl std::error::Error for CountErr {}
impl ser::Error for CountErr {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        CountErr
    }
}

macro_rules! count_prim {
    ($($f:ident: $t:ty = $n:expr),* $(,)?) => {
        $(fn $f(self, _: $t) -> std::result::Result<(), CountErr> { self.0 += $n; Ok(()) })*
    };
}

impl ser::Serializer for &mut Counter {
    type Ok = ();
    type Error = CountErr;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;
    count_prim!(serialize_bool: bool = 1, serialize_i8: i8 = 1, serialize_i16: i16 = 2, serialize_i32: i32 = 4,
        serialize_i64: i64 = 8, serialize_u8: u8 = 1, serialize_u16: u16 = 2, serialize_u32: u32 = 4,
        serialize_u64: u64 = 8, serialize_f32: f32 = 4, serialize_f64: f64 = 8, serialize_char: char = 4);
    fn serialize_str(self, v: &str) -> std::result::Result<(), CountErr> {
        self.0 += v.len() as u64;
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> std::result::Result<(), CountErr> {
        self.0 += v.len() as u64;
        Ok(())
    }
    fn serialize_none(self) -> std::result::Result<(), CountErr> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> std::result::Result<(), CountErr> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<(), CountErr> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> std::result::Result<(), CountErr> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> std::result::Result<(), CountErr> {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> std::result::Result<(), CountErr> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> std::result::Result<(), CountErr> {
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> std::result::Result<Self, CountErr> {
        Ok(self)
    }
}

macro_rules! count_compound {
    ($tr:ident, $m:ident $(, $k:ident)?) => {
        impl ser::$tr for &mut Counter {
            type Ok = ();
            type Error = CountErr;
            fn $m<T: ?Sized + Serialize>(&mut self, $($k: &'static str,)? v: &T) -> std::result::Result<(), CountErr> {
                $(let _ = $k;)?
                v.serialize(&mut **self)
            }
            fn end(self) -> std::result::Result<(), CountErr> {
                Ok(())
            }
        }
    };
}
count_compound!(SerializeSeq, serialize_element);
count_compound!(SerializeTuple, serialize_element);
count_compound!(SerializeTupleStruct, serialize_field);
count_compound!(SerializeTupleVariant, serialize_field);
count_compound!(SerializeStruct, serialize_field, key);
count_compound!(SerializeStructVariant, serialize_field, key);

impl ser::SerializeMap for &mut Counter {
    type Ok = ();
    type Error = CountErr;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> std::result::Result<(), CountErr> {
        k.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> std::result::Result<(), CountErr> {
        v.serialize(&mut **self)
    }
    fn end(self) -> std::result::Result<(), CountErr> {
        Ok(())
    }
}

/// Encodes a recipe segment of `level` over `children` (fingerprint,
/// logical length), for building large synthetic tiers quickly.
pub fn encode_recipe(level: u8, children: &[(Fingerprint, u64)]) -> Vec<u8> {
    crate::format::tree::Recipe {
        level,
        children: children.iter().map(|(f, n)| crate::format::tree::Child { fingerprint: *f, len: *n }).collect(),
    }
    .encode()
}
