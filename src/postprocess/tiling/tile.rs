//! One tile of an image: where it lies and which region it owns.

/// One tile of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Position in [`Tiler::tiles`](super::Tiler::tiles) (row-major).
    pub index: usize,
    /// Left column of the tile in the image.
    pub x0: u32,
    /// Top row of the tile in the image.
    pub y0: u32,
    /// Columns of the image the tile covers (less than the tile side only when the image
    /// is narrower than a tile).
    pub width: u32,
    /// Rows of the image the tile covers.
    pub height: u32,
    /// Size `(width, height)` of the tile image given to the segmenter: the tile's own
    /// `(width, height)`, since tiles are not padded (kept so that a stitcher fed by other
    /// code can discard predictions in padding).
    pub input_size: (u32, u32),
    /// The region `[x0, y0, x1, y1]` (exclusive ends, image coordinates) this tile owns.
    pub core: [u32; 4],
    /// Whether the left, top, right and bottom edges are inside the image (where nuclei may
    /// be cut) rather than on its border.
    pub inner_edges: [bool; 4],
}

impl Tile {
    /// The image region `[x0, y0, x1, y1]` (exclusive ends) the tile covers.
    pub fn rect(&self) -> [u32; 4] {
        [
            self.x0,
            self.y0,
            self.x0 + self.width,
            self.y0 + self.height,
        ]
    }
}
