//! Buffers of batches their consumer is done with, kept to be written into again.
//!
//! A collector's batches are filled on one thread and freed on another (the archive's), once
//! their rows are durable; the allocator hands such large, freshly freed memory back to the
//! kernel, and each new batch then took a page fault for every page it wrote, and every freed
//! one a TLB shootdown. Kept here instead, a spent batch's value buffers become the next
//! batches' columns, their pages already mapped.

use arrow_array::{Array, RecordBatch};
use arrow_buffer::{ArrowNativeType, Buffer};

/// Octets of buffers kept at most; past it, spent buffers are freed as before.
const SPARE_OCTETS: usize = 64 << 20;

/// Value buffers of spent batches, by the width of their values (1, 2, 4 or 8 octets), each
/// held by nothing else.
#[derive(Debug, Default)]
pub struct Spares {
    by_width: [Vec<Buffer>; 4],
    octets: usize,
}

impl Spares {
    /// Keeps the value buffers of `batch`'s columns of fixed-width numbers (up to 64 MiB in
    /// all, the oldest of a width freed first to make room: batches change size); the rest of
    /// it is freed.
    pub fn keep(&mut self, batch: RecordBatch) {
        for column in batch.columns() {
            let data = column.to_data();
            let width = data.data_type().primitive_width();
            let (Some(width), [buffer]) = (width, data.buffers()) else {
                continue;
            };
            let Some(list) = slot(width).and_then(|slot| self.by_width.get_mut(slot)) else {
                continue;
            };
            let capacity = buffer.capacity();
            while self.octets + capacity > SPARE_OCTETS && !list.is_empty() {
                self.octets -= list.remove(0).capacity();
            }
            if self.octets + capacity <= SPARE_OCTETS {
                self.octets += capacity;
                list.push(buffer.clone());
            }
        }
    }

    /// An empty `Vec` with room for `rows` values: the smallest kept buffer of that width with
    /// the room, if it is at most twice what is asked (a small batch does not take a large
    /// batch's buffer, nor count its size) and held by nothing else; else a new one.
    pub fn vec<T: ArrowNativeType>(&mut self, rows: usize) -> Vec<T> {
        let width = size_of::<T>();
        let Some(list) = slot(width).and_then(|slot| self.by_width.get_mut(slot)) else {
            return Vec::with_capacity(rows);
        };
        let (least, most) = (rows * width, 2 * rows * width);
        while let Some(at) = list
            .iter()
            .enumerate()
            .filter(|(_, b)| (least..=most).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity())
            .map(|(at, _)| at)
        {
            let buffer = list.swap_remove(at);
            self.octets -= buffer.capacity();
            // Held elsewhere still (a reader of the batch), or of another layout: freed.
            if let Ok(mut kept) = buffer.into_vec::<T>() {
                kept.clear();
                return kept;
            }
        }
        Vec::with_capacity(rows)
    }
}

/// The list of buffers whose values are `width` octets.
fn slot(width: usize) -> Option<usize> {
    match width {
        1 => Some(0),
        2 => Some(1),
        4 => Some(2),
        8 => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::{TimestampSecondType, UInt16Type, UInt32Type};
    use arrow_array::{ArrayRef, PrimitiveArray, StringArray};
    use arrow_buffer::ScalarBuffer;
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn batch(rows: usize) -> (RecordBatch, [*const u8; 2]) {
        let addresses: Vec<u32> = (0..rows).map(|i| u32::try_from(i).unwrap_or(0)).collect();
        let times: Vec<i64> = vec![7; rows];
        let pointers = [addresses.as_ptr().cast(), times.as_ptr().cast()];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(PrimitiveArray::<UInt32Type>::new(
                ScalarBuffer::from(addresses),
                None,
            )),
            Arc::new(PrimitiveArray::<TimestampSecondType>::new(
                ScalarBuffer::from(times),
                None,
            )),
            Arc::new(StringArray::from(vec!["x"; rows])),
        ];
        let schema = Schema::new(vec![
            Field::new("a", DataType::UInt32, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("s", DataType::Utf8, false),
        ]);
        (
            RecordBatch::try_new(Arc::new(schema), columns).unwrap_or_else(|e| panic!("{e}")),
            pointers,
        )
    }

    #[test]
    fn a_spent_batch_s_buffers_are_written_into_again() {
        let mut spares = Spares::default();
        let (spent, [addresses, times]) = batch(1000);
        spares.keep(spent);
        // The numbers' buffers only, not the text's.
        assert_eq!(spares.octets, 1000 * 4 + 1000 * 8);
        // More than there is room for, or far less: a new buffer.
        assert!(spares.vec::<u32>(2000).capacity() >= 2000);
        let small = spares.vec::<u32>(100);
        assert_ne!(small.as_ptr().cast(), addresses);
        // By width: an i64 column's buffer for u64s, a u32's for u32s.
        let wide = spares.vec::<u64>(500);
        assert_eq!(wide.as_ptr().cast(), times);
        assert!(wide.is_empty() && wide.capacity() == 1000);
        let narrow = spares.vec::<u32>(1000);
        assert_eq!(narrow.as_ptr().cast(), addresses);
        assert_eq!(spares.octets, 0);
        assert!(spares.vec::<u16>(10).capacity() >= 10);
    }

    #[test]
    fn a_buffer_still_read_elsewhere_is_never_handed_out() {
        let mut spares = Spares::default();
        let (spent, [addresses, _]) = batch(100);
        let reader = spent.column(0).clone();
        spares.keep(spent);
        let fresh = spares.vec::<u32>(100);
        assert_ne!(fresh.as_ptr().cast(), addresses);
        assert_eq!(
            reader
                .as_any()
                .downcast_ref::<PrimitiveArray<UInt32Type>>()
                .map(|a| a.value(99)),
            Some(99)
        );
        // At most the bound is kept, the latest first: the oldest make room.
        let mut many = Spares::default();
        let mut latest = std::ptr::null();
        for _ in 0..100 {
            let values: Vec<u16> = vec![1; 256 << 10];
            latest = values.as_ptr();
            let column: ArrayRef = Arc::new(PrimitiveArray::<UInt16Type>::new(
                ScalarBuffer::from(values),
                None,
            ));
            let schema = Schema::new(vec![Field::new("p", DataType::UInt16, false)]);
            many.keep(
                RecordBatch::try_new(Arc::new(schema), vec![column])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        assert!(many.octets <= SPARE_OCTETS);
        assert!(many.octets > SPARE_OCTETS / 2);
        let kept: Vec<Vec<u16>> = (0..100).map(|_| many.vec::<u16>(256 << 10)).collect();
        assert!(kept.iter().any(|v| v.as_ptr() == latest));
    }
}
