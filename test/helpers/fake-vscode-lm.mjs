// The slice of the `vscode` module extension/lm/lm-provider.ts uses, for plain mocha: VS Code 1.104's
// language model classes and `lm.registerLanguageModelChatProvider`, which records the provider.
export class LanguageModelTextPart {
  constructor(value) {
    this.value = value;
  }
}
export class LanguageModelToolCallPart {
  constructor(callId, name, input) {
    this.callId = callId;
    this.name = name;
    this.input = input;
  }
}
export class LanguageModelToolResultPart {
  constructor(callId, content) {
    this.callId = callId;
    this.content = content;
  }
}
export const LanguageModelChatMessageRole = { User: 1, Assistant: 2 };
export const registered = [];
export const lm = {
  registerLanguageModelChatProvider(vendor, provider) {
    registered.push({ vendor, provider });
    return { dispose() {} };
  },
};
