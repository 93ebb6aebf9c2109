//! Runnable examples of fleet's SDK; see the `[[example]]` targets of this package.
