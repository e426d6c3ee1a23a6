//! `chat`: talk to the base model, an adapter or a weighted composite, one line per turn.
//! Each turn renders the whole conversation with the model's chat template and streams the
//! answer. `/reset` forgets the conversation, `/quit` (or end of input) leaves.

use std::io::{BufRead, Write};

use super::commands::Session;
use super::ChatArgs;
use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateParams};
use crate::lora::LoraAdapter;
use crate::sampling::SamplingParams;

pub(crate) fn chat(a: &ChatArgs) -> Result<()> {
    let mut s = Session::open(&a.model)?;
    let tok = s.engine.require_tokenizer()?;
    let src = tok.chat_template().ok_or_else(|| {
        Error::tokenizer(format!("{} has no chat template", s.engine.loaded.path.display()))
    })?;
    let tpl = ChatTemplate::new(src, tok.bos_token(), tok.eos_token())?;
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.seed,
            ..Default::default()
        },
        stop: Vec::new(),
        ignore_eos: false,
    };
    params.sampling.validate()?;
    let adapters = std::mem::take(&mut s.adapters);
    let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(x, w)| (x, *w)).collect();
    let names: Vec<String> = adapters.iter().map(|(x, w)| format!("{}:{w}", x.name)).collect();
    let who = if names.is_empty() { "base model".to_string() } else { names.join(" + ") };
    eprintln!("loradock chat with the {who}; /reset forgets, /quit leaves.");
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(sys) = &a.system {
        history.push(ChatMessage { role: "system".into(), content: sys.clone() });
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| Error::io("stdin", e))? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                history.retain(|m| m.role == "system");
                eprintln!("(conversation forgotten)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage { role: "user".into(), content: line.to_string() });
        let prompt = tok.encode(&tpl.render(&history, true)?, false)?;
        let mut kv = s.kv()?;
        if prompt.len() >= kv.capacity() {
            history.pop();
            eprintln!(
                "(the conversation no longer fits the context of {}; /reset to start over)",
                kv.capacity()
            );
            continue;
        }
        let model = &s.engine.loaded.model;
        let answer =
            generate(model, &mut s.compute, Some(tok), &mut kv, &prompt, &refs, &params, &mut |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            })?;
        let _ = writeln!(out);
        history.push(ChatMessage { role: "assistant".into(), content: answer.text });
    }
    Ok(())
}
