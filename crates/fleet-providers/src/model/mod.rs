//! Model providers: each speaks one wire format (or none) and turns it into fleet's normalized
//! stream of events. Anthropic's Messages API, OpenAI's Chat Completions and Responses APIs
//! (and compatible servers), the offline stand-in, the scripted replay of a recording, and a
//! router that sends each request to its model's provider; and decoding recorded bodies with
//! their decoders, without a connection.

pub mod anthropic;
pub mod decode;
pub mod offline;
pub mod openai;
pub mod router;
pub mod scripted;
